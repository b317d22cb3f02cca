"""lorag as a Ray Serve application: three deployments.

    Ingress          the FastAPI app of ``lorag serve`` (server/app.py), unchanged for
                     clients; its container's engine is a ``RayServeEngine`` (a client of
                     the engine deployment). On the data node (``ray.data_resource``).
    EngineReplica    lorag's engine, multiplexed by adapter version (engine.py);
                     ``ray.engine_*`` settings give its replicas, autoscaling and resources.
    AdapterRegistry  the adapter store answering replicas with verified files
                     (adapters.py). On the data node.

``serve run lorag.cluster.app:build`` takes the settings from the environment
(``LORAG_...``); ``lorag serve --ray`` runs ``serve_on_ray``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from lorag.app.container import Lorag
from lorag.app.settings import RaySettings, Settings
from lorag.cluster.adapters import AdapterRegistry
from lorag.cluster.engine import EngineReplica
from lorag.cluster.engine_client import RayServeEngine
from lorag.cluster.ingest import ray_ingestion

log = logging.getLogger(__name__)


@serve.ingress()
class Ingress:
    """The HTTP API: ``create_app`` over a container whose engine is the Serve client."""

    def __init__(self, settings: Settings, engine: DeploymentHandle, model: str):
        client = RayServeEngine(engine, model=model, max_model_len=settings.engine.max_model_len)
        if settings.ray.ingest_jobs:
            self.lorag = ray_ingestion(settings, engine=client)
        else:
            self.lorag = Lorag(settings, engine=client)
        self.lorag.__dict__["base_model_path"] = model  # resolved by the builder

    def __serve_build_asgi_app__(self):
        from server.app import create_app

        return create_app(self.lorag)

    def __del__(self) -> None:
        self.lorag.close()


def _placed(settings: RaySettings, num_cpus: float) -> dict[str, Any]:
    """Ray actor options putting a deployment on the data node."""
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if settings.data_resource:
        options["resources"] = {settings.data_resource: 0.001}
    return options


def _ingress_options(settings: RaySettings) -> dict[str, Any]:
    return {"num_replicas": settings.ingress_replicas,
            "max_ongoing_requests": settings.ingress_max_ongoing_requests,
            "ray_actor_options": _placed(settings, settings.ingress_num_cpus)}


def _engine_options(settings: RaySettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_ongoing_requests": settings.engine_max_ongoing_requests,
        "ray_actor_options": {"num_cpus": settings.engine_num_cpus,
                              "num_gpus": settings.engine_num_gpus}}
    if settings.engine_max_replicas is None:
        options["num_replicas"] = settings.engine_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": settings.engine_min_replicas,
            "max_replicas": settings.engine_max_replicas,
            "target_ongoing_requests": settings.engine_target_ongoing_requests}
    return options


def build_app(settings: Settings, model: str) -> Application:
    """The application over ``settings`` serving ``model`` (a folder every engine node
    has, or a model name its vLLM can fetch)."""
    ray = settings.ray
    registry = serve.deployment(AdapterRegistry, name="AdapterRegistry").options(
        num_replicas=1, ray_actor_options=_placed(ray, 0)).bind(settings)
    engine = serve.deployment(EngineReplica, name="EngineReplica").options(
        **_engine_options(ray)).bind(settings, registry, model)
    return serve.deployment(Ingress, name="Ingress").options(**_ingress_options(ray)).bind(
        settings, engine, model)


def build(args: dict[str, str] | None = None) -> Application:
    """``serve run lorag.cluster.app:build``: the settings from the environment; the base
    model resolved here (the prepared SmolLM2 by default, on the data node)."""
    settings = Settings()
    lorag = Lorag(settings)
    try:
        model = lorag.base_model_path
    finally:
        lorag.close()
    return build_app(settings, model)


def serve_on_ray(settings: Settings, *, address: str | None, host: str, port: int,
                 on_ready: Callable[[str], None], stop: threading.Event) -> None:
    """Deploy the application on the cluster (``address``; None = settings.ray.address,
    or a local one), wait until ``stop`` is set, then delete it. Raises what Serve raises
    when a deployment cannot start."""
    from lorag.cluster.runtime import connect

    connect(settings.ray, address)
    lorag = Lorag(settings)
    try:
        model = lorag.base_model_path
    finally:
        lorag.close()
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(settings, model), name=settings.ray.app_name, route_prefix="/")
    on_ready(f"http://{host}:{port}")
    try:
        stop.wait()
    finally:
        serve.delete(settings.ray.app_name)
        log.info("the Ray application %s was deleted", settings.ray.app_name)
