"""The caller's documents: ingest, list, get, delete."""
