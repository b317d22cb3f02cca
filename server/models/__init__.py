"""GET /v1/models: the caller's brands as OpenAI models."""
