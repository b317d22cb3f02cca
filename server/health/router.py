"""GET /health (the process answers), /ready (engine and stores warmed up), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from lorag.core.errors import Unavailable
from server import schemas
from server.deps import AppMetrics
from server.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness: the process answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: the engine and the stores are warmed up (and, with "
            "the remote engine, how many of its servers are healthy)",
            responses=schemas.error_responses(503))
def ready(request: Request) -> dict:
    state = request.app.state
    if state.warm_up_error:
        raise Unavailable(f"warm-up failed: {state.warm_up_error}", code="warm_up_failed")
    if not state.ready:
        raise Unavailable("warming up", code="warming_up")
    engine = vars(state.lorag).get("engine")  # built by the warm-up
    if engine is not None and not engine.ready():
        reason = getattr(engine, "not_ready_reason", lambda: "the inference engine stopped")
        raise Unavailable(reason(), code="engine_unavailable")
    health = getattr(engine, "health", None)  # the remote engine: its servers
    return {"status": "ready", **(health() if health else {})}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(metrics: AppMetrics) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
