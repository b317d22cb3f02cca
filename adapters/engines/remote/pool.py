"""The servers of the fleet: their health, load, the adapters lorag loaded on each, and
the checks that take a failing server out and let a recovered one back in.

A server that fails a request or a health check is out at once; a later check that
passes lets it back in after reconciling lorag's record of its adapters with its
``/v1/models`` (a restarted server has lost every adapter it held, so they are loaded
again on their next request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from adapters.engines.remote.client import ServerUnreachable, VLLMClient
from adapters.engines.remote.router import RecentAdapters

log = logging.getLogger(__name__)


@dataclass
class ServerCounts:
    """Running totals per server, for the Prometheus metrics."""

    requests: int = 0
    failures: int = 0
    adapter_loads: int = 0
    adapter_load_failures: int = 0
    adapter_load_seconds: float = 0.0
    adapter_unloads: int = 0
    affinity_hits: int = 0
    spills: int = 0
    retries: int = 0


@dataclass
class Server:
    """One vLLM server as the router and the engine see it."""

    name: str  # its base URL
    client: VLLMClient
    recent: RecentAdapters
    healthy: bool = False
    outstanding: int = 0
    loaded: set[str] = field(default_factory=set)  # adapter names lorag loaded there
    counts: ServerCounts = field(default_factory=ServerCounts)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    why_out: str = "not checked yet"

    def holds(self, adapter: str) -> bool:
        return adapter in self.loaded and adapter in self.recent

    def stats(self) -> dict[str, float]:
        return {"healthy": float(self.healthy), "outstanding": self.outstanding,
                "adapters_loaded": len(self.loaded), **vars(self.counts)}


class ServerPool:
    """The fleet; ``start_checks()`` runs the periodic health checks on the running loop."""

    def __init__(self, servers: list[Server], *, served_model: str, interval: float,
                 check_timeout: float):
        self.servers = servers
        self.served_model = served_model
        self.interval = interval
        self.check_timeout = check_timeout
        self._task: asyncio.Task | None = None

    def healthy(self) -> list[Server]:
        return [s for s in self.servers if s.healthy]

    def take_out(self, server: Server, reason: str) -> None:
        """Stop routing to ``server`` until a health check passes."""
        if server.healthy:
            log.warning("server out of rotation server=%s: %s", server.name, reason)
        server.healthy = False
        server.why_out = reason
        server.counts.failures += 1

    def start_checks(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._check_forever())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await asyncio.gather(*(s.client.close() for s in self.servers), return_exceptions=True)

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check_all()

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(s) for s in self.servers))

    async def check(self, server: Server) -> bool:
        """One health check: answer, same base model, adapters reconciled. Never raises."""
        try:
            if not await server.client.health(self.check_timeout):
                raise ServerUnreachable("/health did not answer 200")
            models = await server.client.models(timeout=self.check_timeout)
        except Exception as exc:  # unreachable, or an answer that is not a model list
            if server.healthy:
                self.take_out(server, f"health check failed: {exc}")
            return False
        roots = {m.root or m.id for m in models if m.parent is None}
        if self.served_model not in roots and self.served_model not in {m.id for m in models}:
            self.take_out(server, f"it now serves {sorted(roots)}, not {self.served_model}")
            return False
        served = {m.id for m in models}
        lost = server.loaded - served
        if lost:
            log.info("server lost adapters server=%s adapters=%s", server.name, sorted(lost))
        server.loaded &= served
        if not server.healthy:
            log.info("server back in rotation server=%s (was out: %s)", server.name, server.why_out)
            server.healthy = True
        return True

    def server_stats(self) -> dict[str, dict[str, float]]:
        return {s.name: s.stats() for s in self.servers}


async def wait_answering(client: VLLMClient, deadline: float, timeout: float) -> list:
    """The server's model list once it answers; raises ServerUnreachable at ``deadline``
    (a monotonic time) with the last error."""
    while True:
        try:
            return await client.models(timeout=timeout)
        except ServerUnreachable as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("waiting for server %s: %s", client.url, exc)
        await asyncio.sleep(0.5)
