"""lorag's HTTP app in-process over the real container (tenants, keys, SQLite stores,
FAISS, adapter store and validation, brands, jobs, chat orchestration), with the fake
embedder and a recording fake engine: for the tests where what is generated does not
matter, only what reaches the engine (which adapter, which sources)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from lorag.app.container import Lorag
from server.app import create_app
from tests.reliability.harness import settings
from tests.unit.chat_fakes import FakeEngine

ADMIN_KEY = "admin-" + "r" * 40


class RecordingEngine(FakeEngine):
    """FakeEngine that keeps every request by id, and counts those still running."""

    def __init__(self) -> None:
        super().__init__(max_model_len=100_000)
        self.by_id: dict[str, object] = {}
        self.running: set[str] = set()

    async def generate(self, request):
        self.by_id[request.request_id] = request
        self.running.add(request.request_id)
        try:
            async for chunk in super().generate(request):
                yield chunk
        finally:
            self.running.discard(request.request_id)


def container(data_dir: Path, model: Path, **server) -> Lorag:
    app = Lorag(settings(data_dir, model))
    app.settings.server.admin_key = SecretStr(ADMIN_KEY)
    for name, value in server.items():
        setattr(app.settings.server, name, value)
    app.__dict__["engine"] = RecordingEngine()  # replaces the cached property
    return app


def client(app: Lorag) -> TestClient:
    """A TestClient (use it as a context manager: it runs the app's start-up)."""
    return TestClient(create_app(app), raise_server_exceptions=False)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(ADMIN_KEY)
