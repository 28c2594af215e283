"""pii stage."""
