"""What a brand serves: a *target*. Written ``adapter@selector`` where the selector is an
alias (``stable``, ``canary``, any other name), a pinned version ``vN``, or ``latest``
(the newest version: the behaviour of lorag before aliases, kept under its own name);
a bare ``adapter`` means ``adapter@stable``; ``@base`` is the base model, no adapter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lorag.core.errors import InvalidInput
from lorag.core.layout import check_name

STABLE = "stable"
CANARY = "canary"
LATEST = "latest"
BASE = "@base"
_PINNED = re.compile(r"^v([1-9][0-9]{0,8})$")
_RESERVED = re.compile(r"^v[0-9]+$")  # looks like a version: never an alias


@dataclass(frozen=True)
class Target:
    """``adapter`` None is the base model (``selector`` is then None too)."""

    adapter: str | None
    selector: str | None = None

    def __str__(self) -> str:
        return BASE if self.adapter is None else f"{self.adapter}@{self.selector}"

    @property
    def pinned_version(self) -> int | None:
        match = _PINNED.match(self.selector or "")
        return int(match.group(1)) if match else None

    @property
    def alias(self) -> str | None:
        if self.adapter is None or self.selector == LATEST or self.pinned_version is not None:
            return None
        return self.selector


def parse_target(text: str | None, *, param: str = "target") -> Target:
    """The target ``text`` names (None or ``@base``: the base model); raises
    InvalidInput(param) for a malformed one."""
    if text is None or text == BASE:
        return Target(None)
    if not isinstance(text, str):
        raise InvalidInput("a target must be a string like 'adapter@stable'", param=param)
    name, at, selector = text.partition("@")
    check_name(name, param)
    if at and not selector:
        raise InvalidInput(f"{text!r}: name a selector after '@' (stable, vN, latest)",
                           param=param)
    selector = selector or STABLE
    if selector != LATEST and not _PINNED.match(selector):
        check_alias(selector, param=param)
    return Target(name, selector)


def check_alias(alias: str, *, param: str = "alias") -> str:
    """An alias name: a name that is neither ``latest`` nor ``vN``; raises InvalidInput."""
    check_name(alias, param)
    if alias == LATEST or _RESERVED.match(alias):
        raise InvalidInput(f"{alias!r} is reserved (latest, vN); pick another alias name",
                           param=param)
    return alias


def parse_selector(selector: str, *, param: str = "target") -> tuple[str, int | None]:
    """``("latest", None)``, ``("version", N)`` for ``vN``, or ``("alias", None)``."""
    if selector == LATEST:
        return LATEST, None
    pinned = _PINNED.match(selector or "")
    if pinned:
        return "version", int(pinned.group(1))
    check_alias(selector, param=param)
    return "alias", None
