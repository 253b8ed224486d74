"""Notifications: live badges and frames for online users, digests and reminders through
pluggable channels for offline ones (docs/notifications.md)."""
