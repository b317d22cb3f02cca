"""Token buckets: a limit per minute that allows bursts up to the limit and refills
continuously. The clock is injected, so tests move time instead of sleeping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

Clock = Callable[[], float]
MINUTE = 60.0


@dataclass(frozen=True)
class Window:
    """What a client may know of one limit: its size, what is left, seconds to full."""

    limit: int
    remaining: int
    reset_seconds: float


class TokenBucket:
    """``capacity`` units per minute; ``take`` either takes all it is asked or nothing."""

    def __init__(self, capacity: int, clock: Clock):
        self.capacity = capacity
        self.rate = capacity / MINUTE
        self.clock = clock
        self.level = float(capacity)
        self.updated = clock()

    def resize(self, capacity: int) -> None:
        """A new limit (an override changed): what is used stays used."""
        self._refill()
        used = self.capacity - self.level
        self.capacity, self.rate = capacity, capacity / MINUTE
        self.level = max(0.0, min(float(capacity), capacity - used))

    def take(self, amount: int) -> float:
        """Take ``amount`` and return 0, or take nothing and return the seconds until
        ``amount`` will be there (``amount`` at most ``capacity``)."""
        self._refill()
        if amount <= self.level:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def give_back(self, amount: int) -> None:
        """Return units taken but not used (a completion shorter than its max_tokens)."""
        self._refill()
        self.level = min(float(self.capacity), self.level + max(0, amount))

    def window(self) -> Window:
        self._refill()
        return Window(self.capacity, int(math.floor(self.level)),
                      (self.capacity - self.level) / self.rate)

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(float(self.capacity), self.level + (now - self.updated) * self.rate)
        self.updated = now
