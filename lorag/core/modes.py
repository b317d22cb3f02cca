"""Retrieval modes: the one closed set brands, chat requests, search and the CLI share.

It lives in the ground because brands (a ground concept) store a mode, and the ground
imports nothing of ``retrieval``. A ``StrEnum`` compares equal to its value, so callers
that pass plain strings (HTTP bodies, argparse) keep working.
"""

from __future__ import annotations

from enum import StrEnum

from lorag.core.errors import InvalidInput


class RetrievalMode(StrEnum):
    """How a chat or a search retrieves: a search mode, or ``off`` (no retrieval)."""

    DENSE = "dense"  # embedding cosine over the tenant's vector index
    LEXICAL = "lexical"  # BM25 over the tenant's FTS5 table
    HYBRID = "hybrid"  # reciprocal rank fusion of dense and lexical
    OFF = "off"  # the chat retrieves nothing (not a search mode)


# The modes a search runs: every mode but OFF, in declaration order (dense and lexical
# come before hybrid, which fuses them).
SEARCH_MODES: tuple[RetrievalMode, ...] = tuple(
    mode for mode in RetrievalMode if mode is not RetrievalMode.OFF)


def parse_mode(value: RetrievalMode | str | None, *, param: str) -> RetrievalMode | None:
    """``value`` as a RetrievalMode (None stays None: the default applies); raises
    InvalidInput naming ``param`` ("<param> must be one of dense, lexical, hybrid, off")."""
    if value is None:
        return None
    if value not in tuple(RetrievalMode):
        raise InvalidInput(f"{param} must be one of {', '.join(RetrievalMode)}", param=param)
    return RetrievalMode(value)
