"""Named registries of pluggable implementations (embedders, indexes, engines...)."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from lorag.core.errors import UnknownName

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; refuses duplicates; lists valid names on a miss."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; raises ValueError on a duplicate."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorate

    def get(self, name: str, *, param: str | None = None) -> Callable[..., T]:
        """The factory for ``name``; raises UnknownName listing the valid names."""
        try:
            return self._factories[name]
        except KeyError:
            valid = ", ".join(sorted(self._factories)) or "(none)"
            raise UnknownName(f"unknown {self.kind} {name!r}; valid: {valid}",
                              param=param or self.kind) from None

    def names(self) -> list[str]:
        return sorted(self._factories)
