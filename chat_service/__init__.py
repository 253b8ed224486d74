"""Real-time buyer–seller messaging for a marketplace's orders."""
