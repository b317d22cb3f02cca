"""POST /v1/search: retrieval only."""
