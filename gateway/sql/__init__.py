"""sql stage."""
