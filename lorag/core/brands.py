"""Brands: a tenant's personas. A brand serves a *target* (``adapter@alias``,
``adapter@vN``, ``adapter@latest`` or the base model; see ``lorag.core.targets``), with a
system prompt and retrieval defaults. It may split traffic: ``split`` gives other
targets a percentage each (the brand's own target serves the rest), sticky per
conversation; ``shadow`` copies a sampled share of requests to a target whose answers
are stored, never returned. ``store`` is the brand's default for keeping answers;
``response_format`` (OpenAI's shape) the brand's default output format ("always reply in
this JSON"), which a request's own ``response_format`` overrides.
Every change is recorded in the audit log.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from lorag.core.audit import AuditLog
from lorag.core.db import Database
from lorag.core.errors import Conflict, InvalidInput, NotFound
from lorag.core.layout import check_name
from lorag.core.migrations import Migration, has_column, migrate
from lorag.core.modes import RetrievalMode, parse_mode
from lorag.core.targets import BASE, parse_target

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

MAX_SPLIT_ARMS = 8
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


def _targets(conn) -> None:
    """Upgrade: a brand named an adapter and served its newest version, which the
    adapters' migration made that adapter's ``stable``: the brand serves ``@stable``."""
    for column, ddl in (("target", "TEXT"), ("split", "TEXT NOT NULL DEFAULT '[]'"),
                        ("shadow", "TEXT"), ("store", "INTEGER")):
        if not has_column(conn, "brands", column):
            conn.execute(f"ALTER TABLE brands ADD COLUMN {column} {ddl}")
    conn.execute("UPDATE brands SET target = adapter_name || '@stable' "
                 "WHERE adapter_name IS NOT NULL AND target IS NULL")


def _quality(conn) -> None:
    """A brand's answer checks (grounding guard, output redaction): defaults for every
    brand that had none."""
    if not has_column(conn, "brands", "quality"):
        conn.execute("ALTER TABLE brands ADD COLUMN quality TEXT NOT NULL DEFAULT '{}'")


def _response_format(conn) -> None:
    """A brand's default response_format (NULL: none)."""
    if not has_column(conn, "brands", "response_format"):
        conn.execute("ALTER TABLE brands ADD COLUMN response_format TEXT")


MIGRATIONS = (Migration(1, "brand targets, splits, shadow, store default", _targets),
              Migration(2, "brand answer checks: grounding guard, output redaction", _quality),
              Migration(3, "brand default response_format", _response_format))

SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's json_schema.name


def _check_fields(value: dict, allowed: set[str], param: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", param=f"{param}.{unknown[0]}")


def parse_response_format(value: Any) -> dict | None:
    """A brand's default ``response_format`` in OpenAI's shape, checked: ``{"type":
    "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name", "schema",
    "description"?, "strict"?}}``; None or ``{"type": "text"}``: none. Raises InvalidInput
    naming the field (``response_format...``)."""
    param = "response_format"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("response_format must be an object", param=param)
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise InvalidInput("type must be one of text, json_object, json_schema",
                           param=f"{param}.type")
    if kind != "json_schema":
        _check_fields(value, {"type"}, param)
        return None if kind == "text" else {"type": kind}
    _check_fields(value, {"type", "json_schema"}, param)
    spec = value.get("json_schema")
    param = f"{param}.json_schema"
    if not isinstance(spec, dict):
        raise InvalidInput("json_schema must be an object", param=param)
    _check_fields(spec, {"name", "schema", "description", "strict"}, param)
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.match(name):
        raise InvalidInput("name must be 1 to 64 letters, digits, '_' or '-'",
                           param=f"{param}.name")
    if not isinstance(spec.get("schema"), dict):
        raise InvalidInput("schema must be a JSON Schema object", param=f"{param}.schema")
    if spec.get("description") is not None and not isinstance(spec["description"], str):
        raise InvalidInput("description must be a string", param=f"{param}.description")
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise InvalidInput("strict must be true or false", param=f"{param}.strict")
    return {"type": kind, "json_schema": {k: v for k, v in spec.items() if v is not None}}

_UNSET: Any = object()


@dataclass(frozen=True)
class SplitArm:
    """``percent`` of a brand's traffic (0 < percent < 100) goes to ``target``."""

    target: str
    percent: float

    def to_dict(self) -> dict:
        return {"target": self.target, "percent": self.percent}


@dataclass(frozen=True)
class Shadow:
    """A sampled share (``rate``, 0 < rate <= 1) of requests is also sent to ``target``."""

    target: str
    rate: float

    def to_dict(self) -> dict:
        return {"target": self.target, "rate": self.rate}


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
    target: str = BASE  # what the brand serves; adapter_name is its adapter part
    split: tuple[SplitArm, ...] = ()
    shadow: Shadow | None = None
    store: bool | None = None  # None: the tenant's default (chat.store_by_default)
    quality: BrandQuality = BrandQuality()
    response_format: dict | None = None  # OpenAI's shape; None: plain text unless asked

    def __post_init__(self) -> None:
        if self.adapter_name and self.target == BASE:  # built from a name alone
            object.__setattr__(self, "target", f"{self.adapter_name}@stable")

    def retrieval(self) -> dict:
        return {"top_k": self.top_k, "mode": self.mode, "filters": self.filters}

    def to_dict(self) -> dict:
        return {"tenant": self.tenant_id, "name": self.name, "adapter": self.adapter_name,
                "target": self.target, "split": [arm.to_dict() for arm in self.split],
                "shadow": self.shadow.to_dict() if self.shadow else None, "store": self.store,
                "system_prompt": self.system_prompt, "retrieval": self.retrieval(),
                "created_at": self.created_at, "updated_at": self.updated_at,
                "quality": self.quality.to_dict(), "response_format": self.response_format}

    def audited(self) -> dict:
        """The fields an audit record keeps (no timestamps)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("created_at", "updated_at")}


def _row(row) -> Brand:
    retrieval = json.loads(row["retrieval"])
    shadow = json.loads(row["shadow"]) if row["shadow"] else None
    return Brand(row["tenant_id"], row["name"], row["adapter_name"], row["system_prompt"],
                 retrieval.get("top_k"), parse_mode(retrieval.get("mode"), param="mode"),
                 retrieval.get("filters"),
                 row["created_at"], row["updated_at"], row["target"] or BASE,
                 tuple(SplitArm(a["target"], a["percent"]) for a in json.loads(row["split"])),
                 Shadow(shadow["target"], shadow["rate"]) if shadow else None,
                 None if row["store"] is None else bool(row["store"]),
                 BrandQuality.parse(json.loads(row["quality"])),
                 json.loads(row["response_format"]) if row["response_format"] else None)


def _format_text(response_format: dict | None) -> str | None:
    return None if response_format is None else json.dumps(response_format)


def normalize_target(text: str | None, *, param: str = "adapter") -> tuple[str, str | None]:
    """(target text, adapter name) of ``text``: a bare name means ``name@stable``."""
    target = parse_target(text, param=param)
    return str(target), target.adapter


def parse_split(arms: Any) -> tuple[SplitArm, ...]:
    """Split arms from ``[{"target", "percent"}]`` (or SplitArm); raises InvalidInput(split)."""
    if arms is None:
        return ()
    if not isinstance(arms, (list, tuple)) or len(arms) > MAX_SPLIT_ARMS:
        raise InvalidInput(f"split must be a list of at most {MAX_SPLIT_ARMS} targets",
                           param="split")
    parsed = []
    for i, arm in enumerate(arms):
        arm = arm.to_dict() if isinstance(arm, SplitArm) else arm
        if not isinstance(arm, dict) or set(arm) != {"target", "percent"}:
            raise InvalidInput("each split entry is {target, percent}", param=f"split[{i}]")
        percent = arm["percent"]
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) \
                or not 0 < percent < 100:
            raise InvalidInput("percent must be above 0 and below 100",
                               param=f"split[{i}].percent")
        parsed.append(SplitArm(normalize_target(arm["target"], param=f"split[{i}].target")[0],
                               float(percent)))
    if sum(a.percent for a in parsed) >= 100:
        raise InvalidInput("split percentages must add up to less than 100 (the brand's own "
                           "target serves the rest)", param="split")
    if len({a.target for a in parsed}) != len(parsed):
        raise InvalidInput("a target appears twice in the split", param="split")
    return tuple(parsed)


def parse_shadow(shadow: Any) -> Shadow | None:
    """A shadow from ``{"target", "rate"}`` (or Shadow, or None); raises InvalidInput(shadow)."""
    if shadow is None or isinstance(shadow, Shadow):
        return shadow
    if not isinstance(shadow, dict) or set(shadow) != {"target", "rate"}:
        raise InvalidInput("shadow is {target, rate}", param="shadow")
    rate = shadow["rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise InvalidInput("rate must be above 0 and at most 1", param="shadow.rate")
    return Shadow(normalize_target(shadow["target"], param="shadow.target")[0], float(rate))


class AdapterNames(Protocol):
    """What brands need of the adapter store: whether a tenant has an adapter of a name."""

    def exists(self, tenant_id: str, name: str) -> bool: ...


class BrandStore:
    """CRUD of brands; every method raises InvalidInput with the field named. Changes are
    recorded in ``audit`` (when given) in the same transaction."""

    def __init__(self, db: Database, adapters: AdapterNames, audit: AuditLog | None = None):
        self.db = db
        self.adapters = adapters
        self.audit = audit
        db.apply_schema(SCHEMA)
        migrate(db, "brands", MIGRATIONS)

    def create(self, tenant_id: str, name: str, *, adapter: str | None = None,
               system_prompt: str = "", top_k: int | None = None,
               mode: RetrievalMode | str | None = None, filters: dict | None = None,
               split: Any = None, shadow: Any = None, store: bool | None = None,
               quality: BrandQuality | dict | None = None,
               response_format: dict | None = None) -> Brand:
        """Create a brand serving ``adapter`` (a target: ``name``, ``name@alias``,
        ``name@vN``, ``name@latest``; None = the base model); raises NotFound (tenant,
        adapter), Conflict, InvalidInput."""
        target, adapter_name = normalize_target(adapter)
        brand = Brand(tenant_id, check_name(name, "brand"), adapter_name, system_prompt,
                      top_k, parse_mode(mode, param="mode"), filters, target=target,
                      split=parse_split(split), shadow=parse_shadow(shadow), store=store,
                      quality=BrandQuality.parse(quality),
                      response_format=parse_response_format(response_format))
        self._check(brand)
        now = time.time()
        brand = replace(brand, created_at=now, updated_at=now)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM tenants WHERE id=?", (tenant_id,)).fetchone() is None:
                raise NotFound(f"tenant {tenant_id!r} not found", param="tenant")
            if conn.execute("SELECT 1 FROM brands WHERE tenant_id=? AND name=?",
                            (tenant_id, name)).fetchone():
                raise Conflict(f"brand {name!r} already exists", param="brand")
            conn.execute("INSERT INTO brands (tenant_id, name, adapter_name, system_prompt, "
                          "retrieval, created_at, updated_at, target, split, shadow, store, "
                          "quality, response_format) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                          (tenant_id, name, adapter_name, system_prompt,
                           json.dumps(brand.retrieval()), now, now, *self._routing(brand),
                           json.dumps(brand.quality.to_dict()),
                           _format_text(brand.response_format)))
            self._audit(conn, "brand.create", None, brand)
        log.info("created brand tenant=%s brand=%s target=%s", tenant_id, name, target)
        return brand

    def update(self, tenant_id: str, name: str, *, adapter: str | None = _UNSET,
               system_prompt: str = _UNSET, top_k: int | None = _UNSET,
               mode: RetrievalMode | str | None = _UNSET, filters: dict | None = _UNSET,
               split: Any = _UNSET, shadow: Any = _UNSET, store: bool | None = _UNSET,
               quality: BrandQuality | dict | None = _UNSET,
               response_format: dict | None = _UNSET,
               action: str = "brand.update", reason: Any = None) -> Brand:
        """Change the given fields (``adapter=None`` = the base model; ``split=[]`` ends a
        split, ``shadow=None`` a shadow); ``action`` names the change in the audit log,
        ``reason`` (when given) is recorded with it.
        Raises NotFound, InvalidInput."""
        changes = self._changes(adapter=adapter, system_prompt=system_prompt, top_k=top_k,
                                mode=mode, filters=filters, split=split, shadow=shadow,
                                store=store, quality=quality,
                                response_format=response_format)
        with self.db.transaction() as conn:
            before = self._get(conn, tenant_id, name)
            brand = replace(before, **changes, updated_at=time.time())
            self._check(brand, before)
            conn.execute("UPDATE brands SET adapter_name=?, system_prompt=?, retrieval=?, "
                         "updated_at=?, target=?, split=?, shadow=?, store=?, quality=?, "
                         "response_format=? WHERE tenant_id=? AND name=?",
                         (brand.adapter_name, brand.system_prompt, json.dumps(brand.retrieval()),
                          brand.updated_at, *self._routing(brand),
                          json.dumps(brand.quality.to_dict()),
                          _format_text(brand.response_format), tenant_id, name))
            self._audit(conn, action, before, brand, reason)
        log.info("updated brand tenant=%s brand=%s target=%s split=%s", tenant_id, name,
                 brand.target, [a.to_dict() for a in brand.split])
        return brand

    @staticmethod
    def _changes(**given: Any) -> dict:
        changes = {k: v for k, v in given.items() if v is not _UNSET}
        if "mode" in changes:
            changes["mode"] = parse_mode(changes["mode"], param="mode")
        if "adapter" in changes:
            changes["target"], changes["adapter_name"] = normalize_target(changes.pop("adapter"))
        if "split" in changes:
            changes["split"] = parse_split(changes["split"])
        if "shadow" in changes:
            changes["shadow"] = parse_shadow(changes["shadow"])
        if "quality" in changes:
            changes["quality"] = BrandQuality.parse(changes["quality"])
        if "response_format" in changes:
            changes["response_format"] = parse_response_format(changes["response_format"])
        if "store" in changes and changes["store"] is not None \
                and not isinstance(changes["store"], bool):
            raise InvalidInput("store must be true, false or null", param="store")
        return changes

    @staticmethod
    def _routing(brand: Brand) -> tuple:
        return (brand.target, json.dumps([a.to_dict() for a in brand.split]),
                json.dumps(brand.shadow.to_dict()) if brand.shadow else None,
                None if brand.store is None else int(brand.store))

    def _audit(self, conn, action: str, before: Brand | None, after: Brand | None,
               reason: Any = None) -> None:
        if self.audit is not None:
            tenant = (after or before).tenant_id
            name = (after or before).name
            recorded = after.audited() if after else None
            if recorded is not None and reason is not None:
                recorded["reason"] = reason
            self.audit.record(conn, tenant_id=tenant, action=action, subject=f"brand:{name}",
                              before=before.audited() if before else None, after=recorded)

    def _get(self, conn, tenant_id: str, name: str) -> Brand:
        row = conn.execute("SELECT * FROM brands WHERE tenant_id=? AND name=?",
                           (tenant_id, name)).fetchone()
        if row is None:
            raise NotFound(f"brand {name!r} not found", param="brand")
        return _row(row)

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
            before = self._get(conn, tenant_id, name)
            conn.execute("DELETE FROM brands WHERE tenant_id=? AND name=?", (tenant_id, name))
            self._audit(conn, "brand.delete", before, None)
        log.info("deleted brand tenant=%s brand=%s", tenant_id, name)

    def _check(self, brand: Brand, before: Brand | None = None) -> None:
        """Targets must name an adapter of the tenant; those the brand already had are
        not checked again, so a brand whose adapter was deleted can still be changed
        (rolled back, re-pointed)."""
        named = [("adapter", brand.target)] + [(f"split[{i}].target", arm.target)
                                               for i, arm in enumerate(brand.split)]
        if brand.shadow:
            named.append(("shadow.target", brand.shadow.target))
        had = set() if before is None else {before.target, *(a.target for a in before.split),
                                             *([before.shadow.target] if before.shadow else [])}
        for param, text in named:
            if text in had:
                continue
            adapter = parse_target(text, param=param).adapter
            if adapter is not None and not self.adapters.exists(brand.tenant_id, adapter):
                raise NotFound(f"adapter {adapter!r} not found", param=param)
        if not isinstance(brand.system_prompt, str) or len(brand.system_prompt) > MAX_SYSTEM_PROMPT:
            raise InvalidInput(f"system_prompt must be a string of at most {MAX_SYSTEM_PROMPT} "
                               "characters", param="system_prompt")
        if brand.top_k is not None and (isinstance(brand.top_k, bool) or not isinstance(brand.top_k, int)
                                        or not 1 <= brand.top_k <= MAX_TOP_K):
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
        if brand.filters is not None and not isinstance(brand.filters, dict):
            raise InvalidInput("filters must be an object", param="filters")
