"""lorag: ingest."""
