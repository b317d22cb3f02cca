"""POST /v1/embeddings: the tenant's embedding model (router, schemas)."""
