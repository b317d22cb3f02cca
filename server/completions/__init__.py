"""POST /v1/completions: a brand's adapter on a raw prompt (router, schemas, serving)."""
