"""POST /v1/chat/completions: router, OpenAI schemas, serving."""
