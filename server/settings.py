"""Settings of the HTTP server."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_key: SecretStr | None = Field(
        None, description="Key for /admin routes; required outside development.")
    max_body_bytes: int = Field(32 * 2**20, ge=1024, description="Largest request body accepted.")
