"""lorag: server."""
