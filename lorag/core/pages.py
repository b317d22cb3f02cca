"""Cursor pages over a tenant's rows, as OpenAI lists them: ``limit``, ``order`` by
creation time, ``after`` / ``before`` an id of the previous page."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from lorag.core.db import Database
from lorag.core.errors import InvalidInput, NotFound

MAX_PAGE = 100


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True)
class PageRequest:
    limit: int = 20
    order: Order = Order.DESC
    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page:
    rows: list[sqlite3.Row]
    has_more: bool


def page(db: Database, table: str, where: str, params: tuple, request: PageRequest) -> Page:
    """Rows of ``table`` (which has ``id`` and ``created_at``) matching ``where``, in
    ``request.order`` from the cursor on. Raises InvalidInput (``limit``), NotFound
    (``after`` / ``before``: an id not among the matching rows)."""
    if not 1 <= request.limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be from 1 to {MAX_PAGE}", param="limit")
    descending = Order(request.order) is Order.DESC
    clauses, values = [where], list(params)
    for name, cursor, later in (("after", request.after, not descending),
                                ("before", request.before, descending)):
        if cursor is None:
            continue
        anchor = db.query_one(f"SELECT created_at, rowid FROM {table} WHERE id=? AND {where}",
                              (cursor, *params))
        if anchor is None:
            raise NotFound(f"{name}: no such id {cursor!r}", param=name)
        sign = ">" if later else "<"
        clauses.append(f"(created_at, rowid) {sign} (?, ?)")
        values += [anchor["created_at"], anchor["rowid"]]
    direction = "DESC" if descending else "ASC"
    rows = db.query(f"SELECT * FROM {table} WHERE {' AND '.join(clauses)} "
                    f"ORDER BY created_at {direction}, rowid {direction} LIMIT ?",
                    (*values, request.limit + 1))
    return Page(rows[:request.limit], len(rows) > request.limit)
