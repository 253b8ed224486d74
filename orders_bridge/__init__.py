"""The mirror of the marketplace's orders, and the adapters to and from its order system."""
