"""Brands: a tenant's personas. A brand names an adapter (None = the base model), a
system prompt and retrieval defaults. It names the adapter, not a version: the newest
version is resolved per request, so registering a new version switches every brand
using it at once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from lorag.core.db import Database
from lorag.core.errors import Conflict, InvalidInput, NotFound
from lorag.core.layout import check_name
from lorag.core.modes import RetrievalMode, parse_mode

log = logging.getLogger(__name__)

MAX_TOP_K = 100
MAX_SYSTEM_PROMPT = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS brands (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    adapter_name TEXT,
    system_prompt TEXT NOT NULL DEFAULT '',
    retrieval TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
"""

_UNSET: Any = object()


# -- answer quality (issue 14): one column, added to older catalogs when missing -----------

QUALITY_COLUMN = "ALTER TABLE brands ADD COLUMN quality TEXT NOT NULL DEFAULT '{}'"
DEFAULT_FALLBACK = ("I could not find support for an answer in the documents, so I would "
                    "rather not guess.")
MAX_FALLBACK = 2_000


class GroundingMode(str, Enum):
    """What the grounding guard does with an answer the sources do not support."""

    OFF = "off"
    FLAG = "flag"        # report the score and the unsupported sentences with the answer
    ABSTAIN = "abstain"  # replace a non-streamed ungrounded answer with the fallback text


@dataclass(frozen=True)
class BrandQuality:
    """A brand's answer checks: the grounding guard and output PII redaction."""

    grounding: GroundingMode = GroundingMode.OFF
    threshold: float = 0.5  # the least share of supported sentences of a grounded answer
    fallback: str = DEFAULT_FALLBACK
    redact_output: bool = False  # replace PII in answers with typed placeholders

    @classmethod
    def parse(cls, value: "BrandQuality | dict | None") -> "BrandQuality":
        """From a dict (partial: the rest default); raises InvalidInput naming the field."""
        if value is None or isinstance(value, BrandQuality):
            return value or cls()
        if not isinstance(value, dict):
            raise InvalidInput("quality must be an object", param="quality")
        unknown = set(value) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise InvalidInput(f"unknown field {sorted(unknown)[0]!r}",
                               param=f"quality.{sorted(unknown)[0]}")
        try:
            grounding = GroundingMode(value.get("grounding", GroundingMode.OFF))
        except ValueError:
            raise InvalidInput("grounding must be one of "
                               f"{', '.join(m.value for m in GroundingMode)}",
                               param="quality.grounding") from None
        quality = cls(grounding, value.get("threshold", 0.5),
                      value.get("fallback", DEFAULT_FALLBACK), value.get("redact_output", False))
        quality.check()
        return quality

    def check(self) -> None:
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or not 0.0 <= threshold <= 1.0:
            raise InvalidInput("threshold must be a number from 0 to 1",
                               param="quality.threshold")
        if not isinstance(self.fallback, str) or not self.fallback.strip() \
                or len(self.fallback) > MAX_FALLBACK:
            raise InvalidInput(f"fallback must be a non-empty string of at most {MAX_FALLBACK} "
                               "characters", param="quality.fallback")
        if not isinstance(self.redact_output, bool):
            raise InvalidInput("redact_output must be true or false",
                               param="quality.redact_output")

    def to_dict(self) -> dict:
        return {**asdict(self), "grounding": self.grounding.value}


def add_quality_column(db: Database) -> None:
    """Give a catalog made before issue 14 the ``quality`` column (idempotent)."""
    columns = {row["name"] for row in db.query("PRAGMA table_info(brands)")}
    if "quality" not in columns:
        with db.transaction() as conn:
            conn.execute(QUALITY_COLUMN)


@dataclass(frozen=True)
class Brand:
    tenant_id: str
    name: str
    adapter_name: str | None = None
    system_prompt: str = ""
    top_k: int | None = None  # None = the retrieval default
    mode: RetrievalMode | None = None  # None = the retrieval default
    filters: dict | None = None
    created_at: float = field(default=0.0, compare=False)
    updated_at: float = field(default=0.0, compare=False)
    quality: BrandQuality = BrandQuality()

    def retrieval(self) -> dict:
        return {"top_k": self.top_k, "mode": self.mode, "filters": self.filters}

    def to_dict(self) -> dict:
        return {"tenant": self.tenant_id, "name": self.name, "adapter": self.adapter_name,
                "system_prompt": self.system_prompt, "retrieval": self.retrieval(),
                "created_at": self.created_at, "updated_at": self.updated_at,
                "quality": self.quality.to_dict()}


def _row(row) -> Brand:
    retrieval = json.loads(row["retrieval"])
    return Brand(row["tenant_id"], row["name"], row["adapter_name"], row["system_prompt"],
                 retrieval.get("top_k"), parse_mode(retrieval.get("mode"), param="mode"),
                 retrieval.get("filters"),
                 row["created_at"], row["updated_at"], BrandQuality.parse(json.loads(row["quality"])))


class AdapterNames(Protocol):
    """What brands need of the adapter store: whether a tenant has an adapter of a name."""

    def exists(self, tenant_id: str, name: str) -> bool: ...


class BrandStore:
    """CRUD of brands; every method raises InvalidInput with the field named."""

    def __init__(self, db: Database, adapters: AdapterNames):
        self.db = db
        self.adapters = adapters
        db.apply_schema(SCHEMA)
        add_quality_column(db)

    def create(self, tenant_id: str, name: str, *, adapter: str | None = None,
               system_prompt: str = "", top_k: int | None = None,
               mode: RetrievalMode | str | None = None, filters: dict | None = None,
               quality: BrandQuality | dict | None = None) -> Brand:
        """Create a brand; raises NotFound (tenant, adapter), Conflict, InvalidInput."""
        brand = Brand(tenant_id, check_name(name, "brand"), adapter, system_prompt,
                      top_k, parse_mode(mode, param="mode"), filters,
                      quality=BrandQuality.parse(quality))
        self._check(brand)
        now = time.time()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM tenants WHERE id=?", (tenant_id,)).fetchone() is None:
                raise NotFound(f"tenant {tenant_id!r} not found", param="tenant")
            if conn.execute("SELECT 1 FROM brands WHERE tenant_id=? AND name=?",
                            (tenant_id, name)).fetchone():
                raise Conflict(f"brand {name!r} already exists", param="brand")
            conn.execute("INSERT INTO brands (tenant_id, name, adapter_name, system_prompt, "
                         "retrieval, created_at, updated_at, quality) VALUES (?,?,?,?,?,?,?,?)",
                         (tenant_id, name, adapter, system_prompt,
                          json.dumps(brand.retrieval()), now, now,
                          json.dumps(brand.quality.to_dict())))
        log.info("created brand tenant=%s brand=%s adapter=%s", tenant_id, name, adapter)
        return replace(brand, created_at=now, updated_at=now)

    def update(self, tenant_id: str, name: str, *, adapter: str | None = _UNSET,
               system_prompt: str = _UNSET, top_k: int | None = _UNSET,
               mode: RetrievalMode | str | None = _UNSET, filters: dict | None = _UNSET,
               quality: BrandQuality | dict | None = _UNSET) -> Brand:
        """Change the given fields (``adapter=None`` = the base model); raises NotFound."""
        if mode is not _UNSET:
            mode = parse_mode(mode, param="mode")
        if quality is not _UNSET:
            quality = BrandQuality.parse(quality)
        changes = {k: v for k, v in dict(adapter_name=adapter, system_prompt=system_prompt,
                                         top_k=top_k, mode=mode, filters=filters,
                                         quality=quality).items()
                   if v is not _UNSET}
        brand = replace(self.get(tenant_id, name), **changes, updated_at=time.time())
        self._check(brand)
        with self.db.transaction() as conn:
            conn.execute("UPDATE brands SET adapter_name=?, system_prompt=?, retrieval=?, "
                         "updated_at=?, quality=? WHERE tenant_id=? AND name=?",
                         (brand.adapter_name, brand.system_prompt, json.dumps(brand.retrieval()),
                          brand.updated_at, json.dumps(brand.quality.to_dict()), tenant_id, name))
        log.info("updated brand tenant=%s brand=%s adapter=%s", tenant_id, name, brand.adapter_name)
        return brand

    def get(self, tenant_id: str, name: str) -> Brand:
        """The brand; raises NotFound(brand), also for another tenant's brand."""
        row = self.db.query_one("SELECT * FROM brands WHERE tenant_id=? AND name=?",
                                (tenant_id, name))
        if row is None:
            raise NotFound(f"brand {name!r} not found", param="brand")
        return _row(row)

    def list(self, tenant_id: str) -> list[Brand]:
        rows = self.db.query("SELECT * FROM brands WHERE tenant_id=? ORDER BY name", (tenant_id,))
        return [_row(r) for r in rows]

    def delete(self, tenant_id: str, name: str) -> None:
        """Delete the brand (its adapter stays); raises NotFound(brand)."""
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM brands WHERE tenant_id=? AND name=?", (tenant_id, name))
        if cur.rowcount == 0:
            raise NotFound(f"brand {name!r} not found", param="brand")
        log.info("deleted brand tenant=%s brand=%s", tenant_id, name)

    def _check(self, brand: Brand) -> None:
        if brand.adapter_name is not None:
            check_name(brand.adapter_name, "adapter")
            if not self.adapters.exists(brand.tenant_id, brand.adapter_name):
                raise NotFound(f"adapter {brand.adapter_name!r} not found", param="adapter")
        if not isinstance(brand.system_prompt, str) or len(brand.system_prompt) > MAX_SYSTEM_PROMPT:
            raise InvalidInput(f"system_prompt must be a string of at most {MAX_SYSTEM_PROMPT} "
                               "characters", param="system_prompt")
        if brand.top_k is not None and (isinstance(brand.top_k, bool) or not isinstance(brand.top_k, int)
                                        or not 1 <= brand.top_k <= MAX_TOP_K):
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
        if brand.filters is not None and not isinstance(brand.filters, dict):
            raise InvalidInput("filters must be an object", param="filters")
