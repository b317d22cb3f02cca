"""The FastAPI app factory: routes, error mapping, limits, metrics, warm-up and shutdown.

Start-up answers /health at once and warms up in the background (/ready is 503 until
the engine and the stores are loaded); shutdown lets uvicorn finish the requests in
flight, then stops the engine.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from fastapi import FastAPI

import lorag
from lorag.app.container import Lorag
from server.actor import Actor
from server.errors import install_error_handlers
from server.limits import BodyLimit
from server.metrics import Metrics, MetricsMiddleware
from server.openapi import openapi
from server.routers import ROUTERS
from server.tasks import Tasks

log = logging.getLogger(__name__)

DESCRIPTION = """\
Retrieval-augmented chat for many tenants from one base model, with a LoRA adapter
per brand. `/v1/...` routes take a tenant's API key (`Authorization: Bearer lrg-...`),
`/admin/...` routes the admin key. Every error is `{"error": {message, type, param, code}}`.
"""


def create_app(container: Lorag, *, on_ready: Callable[[], None] | None = None,
               on_failure: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The HTTP app over a container (which the caller closes).

    ``on_ready`` runs once warm-up is done; ``on_failure`` if warm-up fails.
    """
    app = FastAPI(title="lorag", version=lorag.__version__, description=DESCRIPTION,
                  lifespan=_lifespan)
    app.state.lorag = container
    app.state.metrics = Metrics(container)
    app.state.tasks = Tasks()  # stopped with the app
    app.state.ready = False
    app.state.warm_up_error = None
    app.state.hooks = (on_ready, on_failure)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    settings = container.settings
    app.add_middleware(BodyLimit, default=settings.server.max_body_bytes, per_path=[
        (r"/admin/tenants/[^/]+/adapters", settings.adapters.max_upload_bytes)])
    app.add_middleware(Actor, lorag=container)  # who acts, for the audit log
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees all
    app.openapi = lambda: openapi(app)
    return app


async def warm_up(container: Lorag) -> None:
    """Load everything a request needs, so the first one is not slow."""
    await asyncio.to_thread(container.embedder.warm_up)
    await container.engine.warm_up()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(_clean_up_after_a_dead_server, app.state.lorag)
    task = asyncio.create_task(_warm_up_in_background(app))
    try:
        yield
    finally:
        app.state.ready = False
        task.cancel()
        await app.state.tasks.stop()
        rollouts = vars(app.state.lorag).get("rollouts")
        if rollouts is not None:
            await rollouts.close()  # shadow requests in flight
        engine = vars(app.state.lorag).get("engine")  # only if it was ever built
        if engine is not None:
            await engine.shutdown()
        log.info("stopped")


def _clean_up_after_a_dead_server(container: Lorag) -> None:
    """Before the first request: jobs a dead process left queued/running are failed
    (done in the background, it would also fail jobs started meanwhile), and the
    uploaded files only those jobs would have read are removed."""
    container.jobs.fail_interrupted()
    shutil.rmtree(container.layout.uploads_dir, ignore_errors=True)


async def _warm_up_in_background(app: FastAPI) -> None:
    on_ready, on_failure = app.state.hooks
    try:
        await warm_up(app.state.lorag)
    except Exception as exc:
        log.exception("warm-up failed")
        app.state.warm_up_error = str(exc) or type(exc).__name__
        if on_failure:
            on_failure(exc)
        return
    app.state.ready = True
    log.info("ready")
    if on_ready:
        on_ready()
