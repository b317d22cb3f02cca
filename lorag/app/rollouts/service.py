"""Rollouts: which target serves each request of a brand, what it did, and when to go back.

Joins brands (targets, splits, shadow) with the adapter store (aliases, versions) and
the answer store (stored answers, feedback, readout). The chat asks ``route`` for each
request; the server reports each finished request to ``finish``. Bad events (errors,
-1 ratings) of a split target and of the brand's own target feed a sequential test
(``sequential.py``) that rolls the split target back when it is worse, recorded in the
audit log as ``rollout.rollback`` by ``system:rollback``. Promotions to ``stable`` pass
the gates of ``gates.py`` or are forced, and both are recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol, Sequence

from adapters.engines.protocol import AdapterRef
from adapters.store import AdapterStore, weights_sha256
from lorag.app.chat import ChatService, PreparedChat
from lorag.app.ports import BrandCatalog, Route
from lorag.app.rollouts.gates import GateResult, answer_gate, training_gates
from lorag.app.rollouts.routing import Role, pick, routing_key, shadow_sampled
from lorag.app.rollouts.sequential import AttributionTest
from lorag.app.settings import RolloutSettings
from lorag.core.answers import AnswerStore, Feedback, Outcome, StoredAnswer
from lorag.core.audit import AuditLog, acting_as
from lorag.core.brands import Brand
from lorag.core.db import Database
from lorag.core.errors import Conflict, NotFound
from lorag.core.migrations import Migration, migrate, statements
from lorag.core.targets import STABLE, parse_target

log = logging.getLogger(__name__)

SIGNALS = ("errors", "feedback")
PURGE_EVERY_SECONDS = 60.0

MIGRATIONS = (
    Migration(1, "canary tests", statements("""
        CREATE TABLE IF NOT EXISTS canary_tests (
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            brand TEXT NOT NULL,
            arm TEXT NOT NULL,
            signal TEXT NOT NULL,
            epoch REAL NOT NULL,
            llr REAL NOT NULL DEFAULT 0,
            arm_events INTEGER NOT NULL DEFAULT 0,
            control_events INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, brand, arm, signal))""")),
)


class AnswerScorer(Protocol):
    """Per-question answer scores of a target on a brand's evaluation set (the
    answer-quality evaluation provides one); None when the brand has no set."""

    def scores(self, tenant_id: str, brand: str, target: str) -> list[float] | None: ...


@dataclass(frozen=True)
class Finished:
    """What the server saw of a served request: the completion in OpenAI's shape (None
    when it failed), whether it failed, its latency and tokens, and the grounding guard's
    score of the answer (None when the brand's guard is off or the answer had no
    sentence; an abstained answer keeps the score of what the model said)."""

    completion: dict | None
    error: bool
    latency_seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    groundedness: float | None = None


class RolloutService:
    """Targets, splits, shadow, stored answers, feedback, promotion and rollback.
    Safe for concurrent use."""

    def __init__(self, db: Database, *, brands: BrandCatalog, adapters: AdapterStore,
                 answers: AnswerStore, audit: AuditLog, settings: RolloutSettings,
                 scorer: AnswerScorer | None = None):
        self.db, self.brands, self.adapters, self.answers = db, brands, adapters, answers
        self.audit, self.settings, self.scorer = audit, settings, scorer
        migrate(db, "rollouts", MIGRATIONS)
        self._shadows: set[asyncio.Task] = set()
        self.shadow_dropped = 0  # sampled shadow copies not started: no free slot
        self.shadow_timed_out = 0  # shadow copies cancelled at shadow_timeout_seconds
        self._last_purge = 0.0
        self._sha: dict[int, str] = {}

    # -- routing -----------------------------------------------------------------------

    def route(self, tenant_id: str, brand: Brand, key: str | None,
              messages: Sequence[dict]) -> Route:
        target, role = pick(tenant_id, brand, routing_key(key, messages))
        return Route(target, self.resolve(tenant_id, brand.name, target), role.value)

    def resolve(self, tenant_id: str, brand: str, target: str) -> AdapterRef | None:
        """The version ``target`` names now (None: the base model); raises NotFound(model,
        code adapter_not_found / target_not_found), Conflict(model)."""
        parsed = parse_target(target)
        if parsed.adapter is None:
            return None
        try:
            return self.adapters.resolve_target(tenant_id, parsed.adapter, parsed.selector)
        except NotFound as exc:
            code = exc.code if exc.code == "target_not_found" else "adapter_not_found"
            raise NotFound(f"model {brand!r} serves {target}, which does not exist: "
                           f"{exc.message}", param="model", code=code) from None
        except Conflict as exc:
            raise Conflict(f"model {brand!r}: {exc.message}", param="model",
                           code=exc.code) from None

    # -- outcomes ----------------------------------------------------------------------

    def should_store(self, tenant_id: str, brand: str, requested: bool | None) -> bool:
        """The request's ``store``, else the brand's default, else the tenant default."""
        if requested is not None:
            return requested
        stored = self.brands.get(tenant_id, brand).store
        return self.settings.store_by_default if stored is None else stored

    def finish(self, prepared: PreparedChat, finished: Finished, *, store: bool,
               messages: Sequence[dict], metadata: dict | None = None) -> StoredAnswer | None:
        """Count the request in its target's readout (an error also feeds the canary
        test) and keep the answer when ``store``; returns the stored answer."""
        if prepared.target is not None:
            version = prepared.adapter.version if prepared.adapter else 0
            self.answers.count(Outcome(prepared.tenant_id, prepared.brand, prepared.target,
                                       version, prepared.role or Role.PRIMARY.value,
                                       finished.error, finished.latency_seconds,
                                       finished.prompt_tokens, finished.completion_tokens,
                                       None if finished.error else finished.groundedness))
            if finished.error:
                self._bad_event(prepared.tenant_id, prepared.brand, prepared.target,
                                prepared.role, "errors")
        if not store or finished.completion is None:
            return None
        return self.keep(prepared, finished, messages=messages, metadata=metadata or {})

    def keep(self, prepared: PreparedChat, finished: Finished, *, messages: Sequence[dict],
             metadata: dict, shadow_of: str | None = None) -> StoredAnswer:
        """Store the answer with its provenance."""
        self._purge_old()
        adapter = prepared.adapter
        answer = StoredAnswer(
            id=prepared.request_id, tenant_id=prepared.tenant_id, brand=prepared.brand,
            created_at=time.time(), target=prepared.target, role=prepared.role,
            adapter=adapter.name if adapter else None,
            adapter_version=adapter.version if adapter else None, shadow_of=shadow_of,
            metadata=dict(metadata), completion=dict(finished.completion or {}),
            messages=[dict(m) for m in messages],
            provenance=self._provenance(prepared, finished), groundedness=finished.groundedness)
        self.answers.save(answer)
        return answer

    def _provenance(self, prepared: PreparedChat, finished: Finished) -> dict:
        adapter = prepared.adapter
        return {
            "brand": prepared.brand, "target": prepared.target, "role": prepared.role,
            "adapter": None if adapter is None else {
                "name": adapter.name, "version": adapter.version, "id": adapter.int_id,
                "weights_sha256": self._weights_sha(adapter)},
            "chunks": [{"number": c.number, "document_id": c.document_id,
                        "chunk_id": c.chunk_id, "score": c.score} for c in prepared.citations],
            "retrieved": prepared.retrieved,
            "prompt_sha256": hashlib.sha256(prepared.prompt.encode()).hexdigest(),
            "prompt_template_sha256": prepared.template_sha256,
            "index": prepared.index_state,
            "sampling": {"max_tokens": prepared.sampling.max_tokens,
                         "temperature": prepared.sampling.temperature,
                         "top_p": prepared.sampling.top_p, "seed": prepared.sampling.seed,
                         "stop": list(prepared.sampling.stop)},
            "latency_seconds": round(finished.latency_seconds, 6),
            "retrieval_seconds": round(prepared.retrieval_seconds, 6)}

    def _weights_sha(self, adapter: AdapterRef) -> str | None:
        if adapter.int_id not in self._sha:
            try:
                lineage = self.adapters.get(adapter.tenant_id, adapter.name, adapter.version).lineage
            except NotFound:  # deleted since it served
                return None
            self._sha[adapter.int_id] = ((lineage or {}).get("weights_sha256")
                                         or weights_sha256(adapter.path))
        return self._sha[adapter.int_id]

    def _purge_old(self) -> None:
        days = self.settings.retention_days
        now = time.time()
        if days is None or now - self._last_purge < PURGE_EVERY_SECONDS:
            return
        self._last_purge = now
        purged = self.answers.purge(now - days * 86400)
        if purged:
            log.info("purged %s stored answers older than %s days", purged, days)

    def rate(self, tenant_id: str, answer_id: str, rating: int, comment: str | None = None,
             tags: Sequence[str] = ()) -> tuple[Feedback, bool]:
        """Rate the tenant's stored answer (see ``AnswerStore.rate``); a new rating counts
        in its target's readout and a -1 feeds the canary test."""
        feedback, created = self.answers.rate(tenant_id, answer_id, rating, comment, tags)
        if created:
            answer = self.answers.get(tenant_id, answer_id)
            self.answers.count_feedback(answer, rating)
            if rating < 0 and answer.target is not None:
                self._bad_event(tenant_id, answer.brand, answer.target, answer.role, "feedback")
        return feedback, created

    # -- the canary test ---------------------------------------------------------------

    def _test(self, brand: Brand) -> AttributionTest:
        return AttributionTest(self.settings.alpha / (len(SIGNALS) * max(1, len(brand.split))),
                               self.settings.worse_ratio)

    def _bad_event(self, tenant_id: str, brand_name: str, target: str, role: str | None,
                   signal: str) -> None:
        try:
            brand = self.brands.get(tenant_id, brand_name)
        except NotFound:
            return
        if not brand.split or role not in (Role.PRIMARY.value, Role.SPLIT.value):
            return
        control = 100.0 - sum(arm.percent for arm in brand.split)
        test = self._test(brand)
        failed: list[str] = []
        with self.db.transaction() as conn:
            for arm in brand.split:
                on_arm = role == Role.SPLIT.value and arm.target == target
                if role == Role.SPLIT.value and not on_arm:
                    continue
                llr = self._step(conn, tenant_id, brand, arm.target, signal, on_arm,
                                 test.step(arm.percent / (arm.percent + control), on_arm))
                if test.rejects(llr):
                    failed.append(arm.target)
        for arm_target in failed:
            if self.settings.auto_rollback:
                self.rollback(tenant_id, brand_name, arm_target, automatic=True, reason={
                    "test": "one-sided SPRT on bad-event attribution", "signal": signal,
                    "alpha": test.alpha, "worse_ratio": test.ratio})

    @staticmethod
    def _step(conn, tenant_id: str, brand: Brand, arm: str, signal: str, on_arm: bool,
              step: float) -> float:
        row = conn.execute("SELECT epoch, llr FROM canary_tests WHERE tenant_id=? AND brand=? "
                           "AND arm=? AND signal=?", (tenant_id, brand.name, arm, signal)).fetchone()
        if row is None or row["epoch"] != brand.updated_at:  # a new split starts a new test
            conn.execute("INSERT OR REPLACE INTO canary_tests VALUES (?,?,?,?,?,0,0,0)",
                         (tenant_id, brand.name, arm, signal, brand.updated_at))
        conn.execute(f"UPDATE canary_tests SET llr=llr+?, {'arm' if on_arm else 'control'}_events="
                     f"{'arm' if on_arm else 'control'}_events+1 WHERE tenant_id=? AND brand=? "
                     "AND arm=? AND signal=?", (step, tenant_id, brand.name, arm, signal))
        return conn.execute("SELECT llr FROM canary_tests WHERE tenant_id=? AND brand=? AND arm=? "
                            "AND signal=?", (tenant_id, brand.name, arm, signal)).fetchone()[0]

    # -- changes -----------------------------------------------------------------------

    def set_split(self, tenant_id: str, brand: str, arms: Any) -> Brand:
        """Send ``arms`` (``[{target, percent}]``) their share of the brand's traffic;
        [] ends the split. Raises NotFound, InvalidInput(split)."""
        return self.brands.update(tenant_id, brand, split=arms, action="rollout.split")

    def set_shadow(self, tenant_id: str, brand: str, shadow: Any) -> Brand:
        """Copy a sampled share of requests to a shadow target (None: stop)."""
        return self.brands.update(tenant_id, brand, shadow=shadow, action="rollout.shadow")

    def rollback(self, tenant_id: str, brand: str, target: str | None = None, *,
                 automatic: bool = False, reason: Any = None) -> Brand:
        """Take ``target`` (every split target when None) out of the brand's split: the
        brand's own target serves its traffic. Raises NotFound(target) when it is not in
        the split."""
        current = self.brands.get(tenant_id, brand)
        if target is not None:
            target = str(parse_target(target))
            if target not in {arm.target for arm in current.split}:
                raise NotFound(f"{target} is not in the split of {brand!r}", param="target")
        kept = [a for a in current.split if target is not None and a.target != target]
        with acting_as("system:rollback") if automatic else nullcontext():
            updated = self.brands.update(tenant_id, brand, split=kept, action="rollout.rollback",
                                         reason=reason or {"manual": True})
        log.warning("rolled back tenant=%s brand=%s target=%s automatic=%s", tenant_id, brand,
                    target or "all", automatic)
        return updated

    def promote(self, tenant_id: str, adapter: str, version: int, *, alias: str = STABLE,
                force: bool = False) -> dict:
        """Point ``alias`` at ``version``; to ``stable`` only through the gates (each
        failing gate named in the Conflict, code ``gates_failed``) unless ``force``.
        The decision is kept in the version's lineage and the audit log."""
        candidate = self.adapters.get(tenant_id, adapter, version)
        gates = self.gates(tenant_id, adapter, version) if alias == STABLE else []
        failing = [g for g in gates if g.passed is False]
        if failing and not force:
            raise Conflict("promotion refused; failing gates: " + "; ".join(
                f"{g.name}: {g.detail}" for g in failing), param="version", code="gates_failed")
        decision = {"alias": alias, "version": version, "forced": bool(force and failing),
                    "gates": [g.to_dict() for g in gates], "at": time.time()}
        before = self.adapters.set_alias(tenant_id, adapter, alias, candidate.version)
        self.adapters.add_lineage(tenant_id, adapter, version, gates=decision)
        with self.db.transaction() as conn:
            self.audit.record(conn, tenant_id=tenant_id, action="adapter.promote",
                              subject=f"{adapter}@{alias}", before={"version": before},
                              after=decision)
        return decision | {"previous": before}

    def gates(self, tenant_id: str, adapter: str, version: int) -> list[GateResult]:
        """The gates ``version`` meets or fails to become ``stable``."""
        lineage = self.adapters.get(tenant_id, adapter, version).lineage or {}
        results = training_gates(lineage.get("training_report"), self.settings.gates)
        for brand in self.brands.list(tenant_id):
            if parse_target(brand.target).adapter == adapter and self.scorer is not None:
                candidate = self.scorer.scores(tenant_id, brand.name, f"{adapter}@v{version}")
                stable = self.scorer.scores(tenant_id, brand.name, f"{adapter}@{STABLE}")
                result = answer_gate(candidate, stable, self.settings.gates)
                results.append(replace(result, name=f"{result.name}[{brand.name}]"))
        return results

    # -- shadow ------------------------------------------------------------------------

    def start_shadow(self, chat: ChatService, prepared: PreparedChat, messages: Sequence[dict],
                     served_id: str) -> bool:
        """Copy the served request to the brand's shadow target in the background when
        it is sampled and a shadow slot is free; its answer is stored (``shadow_of`` =
        ``served_id``), never returned. Returns whether a copy was started."""
        brand = self.brands.get(prepared.tenant_id, prepared.brand)
        if not shadow_sampled(brand, prepared.request_id):
            return False
        if len(self._shadows) >= self.settings.shadow_max_inflight:
            self.shadow_dropped += 1
            return False
        try:
            ref = self.resolve(prepared.tenant_id, brand.name, brand.shadow.target)
        except (NotFound, Conflict) as exc:
            log.warning("shadow target unavailable tenant=%s brand=%s: %s", prepared.tenant_id,
                        brand.name, exc.message)
            return False
        shadow = replace(prepared, request_id=f"{prepared.request_id}-shadow", adapter=ref,
                         target=brand.shadow.target, role=Role.SHADOW.value)
        task = asyncio.get_running_loop().create_task(
            self._run_shadow(chat, shadow, list(messages), served_id))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)
        return True

    async def _run_shadow(self, chat: ChatService, prepared: PreparedChat,
                          messages: list[dict], served_id: str) -> None:
        started = time.perf_counter()
        parts, last, error = [], None, False

        async def generate() -> None:
            nonlocal last
            async for chunk in chat.generate(prepared):
                parts.append(chunk.text)
                last = chunk

        try:
            # cancelling it closes chat.generate, which aborts the engine request
            await asyncio.wait_for(generate(), self.settings.shadow_timeout_seconds)
        except asyncio.TimeoutError:
            self.shadow_timed_out += 1
            log.warning("shadow request over %ss cancelled tenant=%s brand=%s target=%s",
                        self.settings.shadow_timeout_seconds, prepared.tenant_id,
                        prepared.brand, prepared.target)
            error = True
        except Exception:
            log.exception("shadow request failed tenant=%s brand=%s target=%s",
                          prepared.tenant_id, prepared.brand, prepared.target)
            error = True
        latency = time.perf_counter() - started
        verdict = None
        if not error:  # scored like a served answer, so the readout compares the two
            try:
                _, verdict = await chat.check(prepared, "".join(parts), streamed=True)
            except Exception:
                log.exception("grounding check of a shadow answer failed tenant=%s brand=%s "
                              "target=%s", prepared.tenant_id, prepared.brand, prepared.target)
        completion = None if error else completion_dict(
            prepared, "".join(parts), last.finish_reason if last else None,
            last.completion_tokens if last else 0, verdict.to_dict() if verdict else None)
        finished = Finished(completion, error, latency, prepared.prompt_tokens,
                            last.completion_tokens if last else 0,
                            verdict.groundedness if verdict else None)
        await asyncio.to_thread(self.finish, prepared, finished, store=False, messages=messages)
        if completion is not None:
            await asyncio.to_thread(self.keep, prepared, finished, messages=messages,
                                    metadata={}, shadow_of=served_id)

    async def drain(self) -> None:
        """Wait for the shadow requests in flight (tests; a graceful shutdown)."""
        while self._shadows:
            await asyncio.gather(*list(self._shadows), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._shadows):
            task.cancel()
        await asyncio.gather(*list(self._shadows), return_exceptions=True)

    # -- readout -----------------------------------------------------------------------

    def readout(self, tenant_id: str, brand: str) -> dict:
        """Per target of the brand: requests, errors, latency, tokens, feedback, mean
        groundedness over the answers the grounding guard scored (and how many); the
        canary tests' state and the rollbacks. Raises NotFound(brand)."""
        current = self.brands.get(tenant_id, brand)
        rows = self.answers.readout(tenant_id, brand)
        targets = [{k: r[k] for k in ("target", "version", "role", "requests", "errors",
                                      "prompt_tokens", "completion_tokens", "feedback_up",
                                      "feedback_down")}
                   | {"error_rate": r["errors"] / r["requests"] if r["requests"] else None,
                      "mean_latency_seconds": r["latency_seconds"] / r["requests"]
                      if r["requests"] else None,
                      "groundedness": r["groundedness_sum"] / r["groundedness_count"]
                      if r["groundedness_count"] else None,
                      "groundedness_count": r["groundedness_count"]} for r in rows]
        test = self._test(current)
        tests = [dict(r) | {"threshold": test.threshold}
                 for r in self.db.query("SELECT arm, signal, llr, arm_events, control_events "
                                        "FROM canary_tests WHERE tenant_id=? AND brand=? AND "
                                        "epoch=?", (tenant_id, brand, current.updated_at))]
        rollbacks = [r.to_dict() for r in self.audit.list(tenant_id, limit=1000)
                     if r.action == "rollout.rollback" and r.subject == f"brand:{brand}"]
        return {"object": "rollout.readout", "brand": brand, "target": current.target,
                "split": [a.to_dict() for a in current.split],
                "shadow": current.shadow.to_dict() if current.shadow else None,
                "targets": targets, "tests": tests, "rollbacks": rollbacks,
                "shadow_dropped": self.shadow_dropped, "shadow_timed_out": self.shadow_timed_out}


def completion_dict(prepared: PreparedChat, text: str, finish_reason: str | None,
                    completion_tokens: int, grounding: dict | None = None) -> dict:
    """A chat completion in OpenAI's shape (with lorag's ``citations``, and ``grounding``
    when the brand's guard ran, as in a non-streamed response)."""
    completion = {
        "id": prepared.request_id, "object": "chat.completion", "created": int(time.time()),
        "model": prepared.brand,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": prepared.prompt_tokens,
                  "completion_tokens": completion_tokens,
                  "total_tokens": prepared.prompt_tokens + completion_tokens},
        "citations": [vars(c) for c in prepared.citations]}
    if grounding is not None:
        completion["grounding"] = grounding
    return completion
