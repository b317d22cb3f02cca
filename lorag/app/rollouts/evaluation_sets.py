"""A brand's evaluation set: the questions the answer-level promotion gate asks the
candidate and the stable (``scoring.py``), kept as
``<data_dir>/tenants/<tenant>/evaluation/<brand>.jsonl`` in the JSON Lines format of
``lorag eval chat`` (``lorag/app/quality/evaluation.py``).

Sets are put whole (validated line by line before anything is written; then written
to a temporary file, fsynced and renamed over the old one, so a reader sees the old
set or the new one, never half), read back and deleted; every put and delete is in
the audit log with the set's sha256 and size before and after.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lorag.app.quality.evaluation import parse_set
from lorag.core.audit import AuditLog
from lorag.core.brands import BrandStore
from lorag.core.db import Database
from lorag.core.errors import InvalidInput, NotFound, PayloadTooLarge
from lorag.core.layout import Layout, check_name, write_atomically

MAX_SET_BYTES = 8 * 2**20
MAX_QUESTIONS = 10_000


def evaluation_set_path(layout: Layout, tenant: str, brand: str) -> Path:
    return layout.tenant_dir(tenant) / "evaluation" / f"{check_name(brand, 'brand')}.jsonl"


@dataclass(frozen=True)
class EvaluationSet:
    """A stored set: its questions as the lines were given (parsed JSON objects)."""

    brand: str
    sha256: str
    updated_at: float
    items: list[dict]

    def to_dict(self) -> dict:
        return {"object": "evaluation.set", "brand": self.brand, "questions": len(self.items),
                "sha256": self.sha256, "updated_at": self.updated_at, "items": self.items}


class EvaluationSets:
    """Put, read and delete brands' evaluation sets. Safe for concurrent use (the last
    put wins whole)."""

    def __init__(self, db: Database, *, layout: Layout, brands: BrandStore, audit: AuditLog):
        self.db, self.layout, self.brands, self.audit = db, layout, brands, audit

    def put(self, tenant_id: str, brand: str, data: bytes) -> EvaluationSet:
        """Replace the brand's set with the JSON Lines ``data``. Raises NotFound (tenant,
        brand), InvalidInput (``line N: field`` for a bad line; ``body`` when the data
        is not UTF-8 or has no question), PayloadTooLarge(body)."""
        self.brands.get(tenant_id, brand)
        if len(data) > MAX_SET_BYTES:
            raise PayloadTooLarge(f"an evaluation set is at most {MAX_SET_BYTES} bytes",
                                  param="body")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the evaluation set is not UTF-8 ({exc.reason} at byte "
                               f"{exc.start})", param="body") from None
        items = parse_set(text, "the evaluation set", param="body")
        if len(items) > MAX_QUESTIONS:
            raise InvalidInput(f"an evaluation set has at most {MAX_QUESTIONS} questions; "
                               f"got {len(items)}", param="body")
        before = self._summary(tenant_id, brand)
        path = evaluation_set_path(self.layout, tenant_id, brand)
        write_atomically(path, "".join(line.strip() + "\n" for line in text.splitlines()
                                        if line.strip()).encode("utf-8"))
        stored = self.get(tenant_id, brand)
        self._record(tenant_id, brand, "evaluation.put", before, self._summary(tenant_id, brand))
        return stored

    def get(self, tenant_id: str, brand: str) -> EvaluationSet:
        """The brand's set; raises NotFound (tenant, brand; ``brand`` when it has none)."""
        found = self._read(tenant_id, brand)
        if found is None:
            raise NotFound(f"brand {brand!r} has no evaluation set", param="brand")
        return found

    def delete(self, tenant_id: str, brand: str) -> None:
        """Remove the brand's set (its answer gate then does not apply); raises NotFound."""
        before = self._summary(tenant_id, brand)
        if before is None:
            raise NotFound(f"brand {brand!r} has no evaluation set", param="brand")
        evaluation_set_path(self.layout, tenant_id, brand).unlink(missing_ok=True)
        self._record(tenant_id, brand, "evaluation.delete", before, None)

    def _read(self, tenant_id: str, brand: str) -> EvaluationSet | None:
        self.brands.get(tenant_id, brand)
        path = evaluation_set_path(self.layout, tenant_id, brand)
        try:
            data, mtime = path.read_bytes(), path.stat().st_mtime
        except FileNotFoundError:
            return None
        items = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        return EvaluationSet(brand, hashlib.sha256(data).hexdigest(), mtime, items)

    def _summary(self, tenant_id: str, brand: str) -> dict | None:
        found = self._read(tenant_id, brand)
        return None if found is None else {"sha256": found.sha256, "questions": len(found.items)}

    def _record(self, tenant_id: str, brand: str, action: str, before: dict | None,
                after: dict | None) -> None:
        with self.db.transaction() as conn:
            self.audit.record(conn, tenant_id=tenant_id, action=action,
                              subject=f"brand:{brand}", before=before, after=after)
