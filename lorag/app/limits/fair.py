"""Fair admission of waiting work over tenants.

A ``WaitQueue`` decides which waiting item goes next: ``DeficitRoundRobin`` visits the
tenants with waiting work in turn and lets each take items worth up to its quantum
(``quantum x weight``) per visit, the unused part carried to its next visit (Shreedhar
and Varghese's deficit round robin); ``Fifo`` takes them in arrival order. A gate holds
a number of slots and hands them out in its queue's order: ``AsyncGate`` for
generations (asyncio), ``ThreadGate`` for ingestion's embedding (threads).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Callable, Iterator, Protocol

from lorag.app.limits.settings import SchedulingPolicy

Weight = Callable[[str], float]


class WaitQueue(Protocol):
    def push(self, tenant: str, item: Any, cost: int) -> None: ...

    def pop(self) -> Any | None:
        """The next item to admit; None when nothing waits."""

    def discard(self, item: Any) -> None:
        """Remove a waiting item (its waiter went away) without it taking a turn."""

    def __len__(self) -> int: ...


class Fifo:
    """Arrival order, whatever the tenant."""

    def __init__(self, quantum: int = 0, weight: Weight | None = None):
        self._items: deque[Any] = deque()

    def push(self, tenant: str, item: Any, cost: int) -> None:
        self._items.append(item)

    def pop(self) -> Any | None:
        return self._items.popleft() if self._items else None

    def discard(self, item: Any) -> None:
        if item in self._items:
            self._items.remove(item)

    def __len__(self) -> int:
        return len(self._items)


class DeficitRoundRobin:
    """Tenants with waiting items in turn; per visit a tenant is credited ``quantum x
    weight(tenant)`` and takes items while their cost fits its credit."""

    def __init__(self, quantum: int, weight: Weight):
        self.quantum, self.weight = quantum, weight
        self._queues: dict[str, deque[tuple[Any, int]]] = {}
        self._turn: deque[str] = deque()  # tenants with waiting items, in visiting order
        self._deficit: dict[str, float] = {}
        self._credited = False  # the tenant at the head has had this visit's credit
        self._size = 0

    def push(self, tenant: str, item: Any, cost: int) -> None:
        if tenant not in self._queues:
            self._queues[tenant] = deque()
            self._turn.append(tenant)
            self._deficit[tenant] = 0.0
        self._queues[tenant].append((item, max(1, cost)))
        self._size += 1

    def pop(self) -> Any | None:
        while self._turn:
            tenant = self._turn[0]
            if not self._credited:
                self._deficit[tenant] += self.quantum * self.weight(tenant)
                self._credited = True
            queue = self._queues[tenant]
            item, cost = queue[0]
            if cost <= self._deficit[tenant]:
                self._deficit[tenant] -= cost
                queue.popleft()
                self._size -= 1
                if not queue:
                    self._forget(tenant)
                return item
            self._turn.rotate(-1)
            self._credited = False
        return None

    def discard(self, item: Any) -> None:
        for tenant, queue in self._queues.items():
            for entry in queue:
                if entry[0] is item:
                    queue.remove(entry)
                    self._size -= 1
                    if not queue:
                        self._forget(tenant)
                    return

    def _forget(self, tenant: str) -> None:
        """An idle tenant leaves the turn and keeps no credit."""
        if self._turn and self._turn[0] == tenant:
            self._credited = False
        self._turn.remove(tenant)
        del self._queues[tenant], self._deficit[tenant]

    def __len__(self) -> int:
        return self._size


WAIT_QUEUES: dict[SchedulingPolicy, Callable[[int, Weight], WaitQueue]] = {
    SchedulingPolicy.FAIR: DeficitRoundRobin, SchedulingPolicy.FIFO: Fifo}


def wait_queue(policy: SchedulingPolicy, quantum: int, weight: Weight) -> WaitQueue:
    return WAIT_QUEUES[policy](quantum, weight)


class AsyncGate:
    """``slots`` holders at once; the others wait in ``queue``'s order. Use from one
    event loop."""

    def __init__(self, slots: int, queue: WaitQueue):
        self.slots, self.queue = slots, queue
        self.busy = 0

    @asynccontextmanager
    async def slot(self, tenant: str, cost: int) -> AsyncIterator[None]:
        await self.acquire(tenant, cost)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, tenant: str, cost: int) -> None:
        if self.busy < self.slots and not len(self.queue):
            self.busy += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self.queue.push(tenant, waiter, cost)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted as it was cancelled
                self.release()
            else:
                self.queue.discard(waiter)
            raise

    def release(self) -> None:
        self.busy -= 1
        while self.busy < self.slots and (waiter := self.queue.pop()) is not None:
            if not waiter.done():  # a cancelled waiter is skipped
                self.busy += 1
                waiter.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self.queue)


class ThreadGate:
    """The same for threads: ``slots`` holders at once, the others wait in order."""

    def __init__(self, slots: int, queue: WaitQueue):
        self.slots, self.queue = slots, queue
        self.busy = 0
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, tenant: str, cost: int) -> Iterator[None]:
        with self._lock:
            granted = self.busy < self.slots and not len(self.queue)
            if granted:
                self.busy += 1
            else:
                event = threading.Event()
                self.queue.push(tenant, event, cost)
        if not granted:
            event.wait()  # set with the slot already counted as ours
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1
                while self.busy < self.slots and (event := self.queue.pop()) is not None:
                    self.busy += 1
                    event.set()
