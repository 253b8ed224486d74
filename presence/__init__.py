"""Who is connected right now: the per-user connection registry and the seller indicator."""
