"""Joining a Ray cluster, or starting a one-node one for a single machine."""

from __future__ import annotations

import logging

from lorag.app.settings import RaySettings

log = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_BYTES = 500_000_000  # Ray's default takes 30% of the RAM


def connect(settings: RaySettings, address: str | None = None) -> None:
    """Join ``address`` (or ``settings.address``); with neither, start a local cluster
    whose node holds the data directory (``settings.data_resource``). No-op when this
    process is already connected."""
    import ray

    if ray.is_initialized():
        return
    address = address or settings.address
    if address:
        ray.init(address=address)
        log.info("joined the Ray cluster at %s", address)
        return
    resources = {settings.data_resource: 1} if settings.data_resource else None
    ray.init(resources=resources, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
             include_dashboard=False)
    log.info("started a local Ray cluster")
