"""The generic service: one process per replica, its runtime and its work."""
