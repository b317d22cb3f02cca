"""Joining a Ray cluster, or starting a one-node one for a single machine."""

from __future__ import annotations

import logging
import os

from lorag.app.settings import RaySettings

log = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_BYTES = 500_000_000  # Ray's default takes 30% of the RAM
# A local cluster shares its machine with lorag's own work: Serve's 5 s readiness and
# health checks of its HTTP proxy fail on a busy machine, and Serve then kills the proxy
# while it starts (serve.start fails). The processes the cluster starts inherit these.
LOCAL_START_ATTEMPTS = 3  # Ray gives its raylet a fixed 30 s to register, too few when busy
LOCAL_CLUSTER_ENV = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
                     "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}


def connect(settings: RaySettings, address: str | None = None, *,
            num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Join ``address`` (or ``settings.address``); with neither, start a local cluster
    (``num_cpus``: None = the machine's) whose node holds the data directory
    (``settings.data_resource``). No-op when this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    address = address or settings.address
    if address:
        ray.init(address=address)
        log.info("joined the Ray cluster at %s", address)
        return
    resources = {settings.data_resource: 1} if settings.data_resource else None
    for name, value in LOCAL_CLUSTER_ENV.items():
        os.environ.setdefault(name, value)
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            ray.init(num_cpus=num_cpus, resources=resources,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                     log_to_driver=log_to_driver)
            break
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == LOCAL_START_ATTEMPTS:
                raise
            log.warning("the local Ray node did not register in Ray's 30 s (a busy machine); "
                        "starting it again: %s", exc)
            ray.shutdown()
    log.info("started a local Ray cluster")
