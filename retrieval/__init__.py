"""lorag: retrieval."""
