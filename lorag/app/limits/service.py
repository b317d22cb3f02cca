"""Per-tenant limits, quotas, fair admission and usage: the one service the HTTP API,
the CLI and ingestion ask.

Chat: ``admit_chat`` checks requests per minute and concurrent generations before any
work is done and returns a ``ChatTicket``; the ticket reserves the request's tokens
(prompt + max_tokens) once the prompt is known, waits for a generation slot in the fair
order, and on ``finish`` gives back the tokens not generated and records the usage.
Ingestion: a ``Quota`` per run (documents and bytes per day, stored bytes) and the
embedding shared over tenants in slices through a fair gate (``ingest.service``'s
``IngestLimits``). Overrides are read from the catalog, so a change made by another
process applies within ``refresh_seconds``, one made here at once.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np
from pydantic import ValidationError

from lorag.app.limits.buckets import Clock, TokenBucket, Window
from lorag.app.limits.fair import AsyncGate, ThreadGate, wait_queue
from lorag.app.limits.settings import LimitSettings, LimitValues
from lorag.core.errors import InvalidInput, NotFound, QuotaExceeded, RateLimited
from lorag.core.limits import LimitStore, Usage, utc_day

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitView:
    """A tenant's limits: the defaults, its overrides, and what applies."""

    tenant_id: str
    defaults: LimitValues
    overrides: dict
    effective: LimitValues


@dataclass
class _TenantState:
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    active: int = 0  # chat requests admitted and not finished


class ChatTicket:
    """One admitted chat request. ``finish`` (idempotent) ends it: tokens not generated
    are given back, the usage is recorded and the concurrency slot freed."""

    def __init__(self, limits: "TenantLimits", tenant: str, state: _TenantState):
        self.limits, self.tenant, self.state = limits, tenant, state
        self.reserved = 0
        self.finished = False

    def reserve_tokens(self, tokens: int) -> None:
        """Take ``tokens`` (prompt + max_tokens) from the tenant's tokens per minute;
        raises RateLimited (429), InvalidInput (param ``max_tokens``) when one request
        asks for more than the whole limit. Ends the ticket when it raises."""
        bucket = self.state.tokens
        if bucket is not None:
            if tokens > bucket.capacity:
                self.finish(0, 0, served=False)
                raise InvalidInput(f"the request needs {tokens} tokens (prompt + max_tokens), "
                                   f"over the tenant's tokens_per_minute of {bucket.capacity}",
                                   param="max_tokens")
            wait = bucket.take(tokens)
            if wait:
                self.finish(0, 0, served=False)
                raise RateLimited(f"tokens per minute limit reached ({bucket.capacity}); retry "
                                  f"in {wait:.1f} s", retry_after=wait, windows=self.windows())
        self.reserved = tokens

    @asynccontextmanager
    async def generating(self) -> AsyncIterator[None]:
        """Hold one of the engine's generation slots (waiting in the fair order)."""
        async with self.limits.generations.slot(self.tenant, max(1, self.reserved)):
            yield

    def windows(self) -> dict[str, Window]:
        return _windows(self.state)

    def finish(self, prompt_tokens: int, completion_tokens: int, *, served: bool = True) -> None:
        if self.finished:
            return
        self.finished = True
        self.state.active -= 1
        self.limits.chats_in_flight -= 1
        if self.state.tokens is not None and self.reserved:
            self.state.tokens.give_back(self.reserved - prompt_tokens - completion_tokens)
        if served:
            self.limits.record_soon(self.tenant, requests=1, prompt_tokens=prompt_tokens,
                                    completion_tokens=completion_tokens)


class Quota:
    """What one ingestion run may still take: documents and bytes today, stored bytes."""

    def __init__(self, tenant: str, values: LimitValues, today: Usage, stored: int,
                 seconds_to_midnight: float):
        self.tenant = tenant
        self.documents = _left(values.documents_per_day, today.documents)
        self.bytes = _left(values.ingest_bytes_per_day, today.bytes)
        self.stored = _left(values.max_stored_bytes, stored)
        self.values, self.seconds_to_midnight = values, seconds_to_midnight

    def take(self, size: int) -> str | None:
        """Count one document of ``size`` bytes; or the reason it is over a quota."""
        checks = (("documents_per_day", self.documents, 1), ("ingest_bytes_per_day", self.bytes, size),
                  ("max_stored_bytes", self.stored, size))
        for name, left, amount in checks:
            if left is not None and amount > left:
                return (f"the tenant's {name} quota ({getattr(self.values, name)}) is used up"
                        if left <= 0 else f"the document ({size} bytes) is over what is left of "
                        f"the tenant's {name} quota ({left} of {getattr(self.values, name)})")
        self.documents = None if self.documents is None else self.documents - 1
        self.bytes = None if self.bytes is None else self.bytes - size
        self.stored = None if self.stored is None else self.stored - size
        return None

    def check(self) -> None:
        """Raises QuotaExceeded (429) when no document at all fits any more."""
        for name, left in (("documents_per_day", self.documents), ("ingest_bytes_per_day", self.bytes)):
            if left is not None and left <= 0:
                raise QuotaExceeded(f"the tenant's {name} quota ({getattr(self.values, name)}) is "
                                    "used up until the next UTC day",
                                    retry_after=self.seconds_to_midnight, param=name)
        if self.stored is not None and self.stored <= 0:
            raise QuotaExceeded(f"the tenant's stored data is over its max_stored_bytes "
                                f"({self.values.max_stored_bytes}); delete documents first",
                                retry_after=None, param="max_stored_bytes")


class TenantLimits:
    """Limits, quotas, fair admission and usage of all tenants (one per process)."""

    def __init__(self, settings: LimitSettings, store: LimitStore, *, generation_slots: int,
                 tenant_dir: Callable[[str], Path], clock: Clock = time.monotonic,
                 wall: Clock = time.time):
        self.settings, self.store = settings, store
        self.tenant_dir, self.clock, self.wall = tenant_dir, clock, wall
        self._states: dict[str, _TenantState] = {}
        self._overrides: dict[str, dict] = {}
        self._read_at = -math.inf
        self.chats_in_flight = 0  # read by ingestion threads: one int, no lock needed
        self.sleep = time.sleep
        slots = settings.generation_slots or generation_slots
        self.generations = AsyncGate(slots, wait_queue(settings.scheduling, settings.quantum_tokens,
                                                       self.weight))
        self.embedding = ThreadGate(settings.embedding_slots, wait_queue(
            settings.scheduling, settings.embedding_slice, self.weight))
        self._embedders: ThreadPoolExecutor | None = None
        self._embedders_lock = threading.Lock()

    # --- limits and overrides --------------------------------------------------------

    def values(self, tenant: str) -> LimitValues:
        """The limits that apply to ``tenant`` now."""
        overrides = self._current_overrides().get(tenant)
        if not overrides:
            return self.settings.defaults
        return self.settings.defaults.model_copy(update=overrides)

    def weight(self, tenant: str) -> float:
        return self.values(tenant).weight

    def view(self, tenant: str) -> LimitView:
        """Raises NotFound (param ``tenant``)."""
        overrides = self._checked_tenant_overrides(tenant)
        return LimitView(tenant, self.settings.defaults, overrides, self.values(tenant))

    def set_overrides(self, tenant: str, overrides: dict, *, replace: bool = False) -> LimitView:
        """Merge ``overrides`` into the tenant's (a None value removes that override;
        ``replace``: they become the tenant's only overrides). Raises NotFound (param
        ``tenant``), InvalidInput naming the field (unknown, negative, zero)."""
        current = {} if replace else dict(self._checked_tenant_overrides(tenant))
        current.update(overrides)
        merged = {name: value for name, value in current.items() if value is not None}
        try:
            checked = LimitValues.model_validate({**self.settings.defaults.model_dump(), **merged})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "limits"
            raise InvalidInput(f"{name}: {first['msg']}", param=name) from None
        merged = {name: getattr(checked, name) for name in merged}
        self.store.set_overrides(tenant, merged)
        self._read_at = -math.inf  # read again at the next request
        return self.view(tenant)

    def _checked_tenant_overrides(self, tenant: str) -> dict:
        if not self.store.db.query_one("SELECT 1 FROM tenants WHERE id=?", (tenant,)):
            raise NotFound(f"tenant {tenant!r} not found", param="tenant")
        return self.store.overrides(tenant)

    def _current_overrides(self) -> dict[str, dict]:
        now = self.clock()
        if now - self._read_at >= self.settings.refresh_seconds:
            self._overrides = self.store.all_overrides()
            self._read_at = now
        return self._overrides

    # --- chat ------------------------------------------------------------------------

    def admit_chat(self, tenant: str) -> ChatTicket:
        """Admit one chat request or raise RateLimited (429): requests per minute,
        concurrent generations."""
        values = self.values(tenant)
        state = self._state(tenant, values)
        if values.max_concurrent_generations is not None and \
                state.active >= values.max_concurrent_generations:
            raise RateLimited(f"too many concurrent requests (max_concurrent_generations "
                              f"{values.max_concurrent_generations}); retry when one has ended",
                              retry_after=1.0, windows=_windows(state), code="concurrency_limit_exceeded")
        if state.requests is not None and (wait := state.requests.take(1)):
            raise RateLimited(f"requests per minute limit reached ({state.requests.capacity}); "
                              f"retry in {wait:.1f} s", retry_after=wait, windows=_windows(state))
        state.active += 1
        self.chats_in_flight += 1
        return ChatTicket(self, tenant, state)

    def _state(self, tenant: str, values: LimitValues) -> _TenantState:
        state = self._states.setdefault(tenant, _TenantState())
        state.requests = self._bucket(state.requests, values.requests_per_minute)
        state.tokens = self._bucket(state.tokens, values.tokens_per_minute)
        return state

    def _bucket(self, bucket: TokenBucket | None, capacity: int | None) -> TokenBucket | None:
        if capacity is None:
            return None
        if bucket is None:
            return TokenBucket(capacity, self.clock)
        if bucket.capacity != capacity:
            bucket.resize(capacity)
        return bucket

    def forget(self, tenant: str) -> None:
        """A deleted tenant's buckets go (its catalog rows go by cascade)."""
        self._states.pop(tenant, None)

    # --- usage -----------------------------------------------------------------------

    def record(self, tenant: str, **counts: int) -> None:
        """Add to the tenant's usage of today (the catalog's ledger)."""
        self.store.add_usage(tenant, utc_day(self.wall()), **counts)

    def record_soon(self, tenant: str, **counts: int) -> None:
        """``record`` off the event loop when called on one (a catalog write may wait for
        another writer's transaction)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self.record(tenant, **counts)
        loop.run_in_executor(None, lambda: self._record_logged(tenant, counts))

    def _record_logged(self, tenant: str, counts: dict) -> None:
        try:
            self.record(tenant, **counts)
        except Exception:  # usage is counted after the answer was served: never fail it
            log.exception("usage not recorded tenant=%s %s", tenant, counts)

    def usage(self, tenant: str, day: str | None = None) -> Usage:
        """Raises NotFound (param ``tenant``)."""
        self._checked_tenant_overrides(tenant)
        return self.store.usage(tenant, day)

    def active(self) -> dict[str, int]:
        """Chat requests admitted and not finished, per tenant."""
        return {tenant: state.active for tenant, state in self._states.items() if state.active}

    # --- ingestion (ingest.service.IngestLimits) -----------------------------------------

    def quota(self, tenant: str) -> Quota:
        values = self.values(tenant)
        stored = _folder_bytes(self.tenant_dir(tenant)) if values.max_stored_bytes else 0
        now = self.wall()
        return Quota(tenant, values, self.store.usage(tenant, utc_day(now)), stored,
                     _seconds_to_midnight(now))

    def check_ingest(self, tenant: str) -> None:
        """Raises QuotaExceeded (429) when the tenant can ingest nothing now."""
        self.quota(tenant).check()

    def ingested(self, tenant: str, documents: int, size: int) -> None:
        self.record(tenant, documents=documents, bytes=size)

    def embed(self, tenant: str, texts: list[str],
              embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """``embed(texts)`` in slices, each waiting for an embedding slot in the fair order
        and computed on an embedding worker of low OS priority (``embedding_nice``)."""
        step = self.settings.embedding_slice
        parts = []
        for start in range(0, len(texts), step):
            piece = texts[start:start + step]
            with self.embedding.slot(tenant, len(piece)):
                started = self.clock()
                parts.append(self._embedding_workers().submit(embed, piece).result())
                self._yield_to_chats(self.clock() - started)
        return np.concatenate(parts) if parts else embed([])

    def _embedding_workers(self) -> ThreadPoolExecutor:
        """One worker per embedding slot, started on first use, each at ``embedding_nice``:
        the chats' work preempts ingestion's instead of sharing the cores with it."""
        with self._embedders_lock:
            if self._embedders is None:
                self._embedders = ThreadPoolExecutor(
                    self.settings.embedding_slots, thread_name_prefix="lorag-embed",
                    initializer=_lower_priority, initargs=(self.settings.embedding_nice,))
            return self._embedders

    def close(self) -> None:
        """Stop the embedding workers (safe to call twice; a later ``embed`` starts them again)."""
        with self._embedders_lock:
            workers, self._embedders = self._embedders, None
        if workers is not None:
            workers.shutdown(wait=True)

    def _yield_to_chats(self, seconds: float) -> None:
        """While chats are in flight, pause (holding the embedding slot, so all ingestion
        pauses) long enough that ingestion embeds at most ``embedding_share_while_chatting``
        of the time."""
        share = self.settings.embedding_share_while_chatting
        if share < 1 and self.chats_in_flight > 0:
            self.sleep(seconds * (1 - share) / share)


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value to ``nice`` (Linux: nice is per thread; an
    unprivileged process may always lower its own priority). Elsewhere nothing changes."""
    if nice <= 0 or sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except OSError as exc:
        log.warning("embedding worker priority unchanged: %s", exc)


def _windows(state: _TenantState) -> dict[str, Window]:
    return {name: bucket.window() for name, bucket in
            (("requests", state.requests), ("tokens", state.tokens)) if bucket is not None}


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else limit - used


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _seconds_to_midnight(now: float) -> float:
    day = time.gmtime(now)
    midnight = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0)) + 86400
    return midnight - now
