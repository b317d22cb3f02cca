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


@router.get("/ready", summary="Readiness: the engine and the stores are warmed up",
            responses=schemas.error_responses(503))
def ready(request: Request) -> dict[str, str]:
    state = request.app.state
    if state.warm_up_error:
        raise Unavailable(f"warm-up failed: {state.warm_up_error}", code="warm_up_failed")
    if not state.ready:
        raise Unavailable("warming up", code="warming_up")
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(metrics: AppMetrics) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
