"""The answer-level promotion gate's scores: a brand's evaluation set answered through the
real chat path with a given target, each answer scored by the answer-quality metrics
(``lorag.app.quality``).

The set is the brand's file ``<data_dir>/tenants/<tenant>/evaluation/<brand>.jsonl`` in
the format of ``lorag eval chat`` (``lorag/app/quality/evaluation.py``), put through
``evaluation_sets.EvaluationSets`` (route, CLI); a brand without one has no answer gate. Each question is prepared once per target as a served request
would be (same retrieval, same prompt), then generated greedily with the target's
version, so a candidate and the stable differ only by the adapter. An answer's score is
the mean of its groundedness, citation precision and citation recall (those defined for
it; 0 when none is, e.g. an empty answer).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Awaitable, Callable, Sequence, TypeVar

from adapters.engines.protocol import AdapterRef, InferenceEngine
from lorag.app.chat import ChatRequest, ChatService
from lorag.app.quality.evaluation import EvalItem, load_set
from lorag.app.quality.metrics import AnswerMetrics, AnswerScores
from lorag.app.rollouts.evaluation_sets import evaluation_set_path
from lorag.core.errors import NotFound
from lorag.core.layout import Layout

log = logging.getLogger(__name__)

T = TypeVar("T")
GATE_METRICS = ("groundedness", "citation_precision", "citation_recall")


def answer_score(scores: AnswerScores) -> float:
    """The mean of the answer's defined gate metrics; 0 when none is defined."""
    values = [v for v in (getattr(scores, name) for name in GATE_METRICS) if v is not None]
    return sum(values) / len(values) if values else 0.0


class EvaluationScorer:
    """``AnswerScorer`` of ``RolloutService``. ``resolve(tenant, brand, target)`` gives
    the version a target names (None: the base model). Runs the answers on the engine's
    event loop when the engine is started there (a server), else starts the engine for
    the duration (the CLI). Safe for concurrent use."""

    def __init__(self, *, layout: Layout, chat: Callable[[], ChatService],
                 metrics: Callable[[], AnswerMetrics],
                 resolve: Callable[[str, str, str], AdapterRef | None],
                 max_questions: int, max_tokens: int | None = None,
                 timeout_seconds: float = 3600.0):
        self.layout, self._chat, self._metrics, self._resolve = layout, chat, metrics, resolve
        self.max_questions, self.max_tokens = max_questions, max_tokens
        self.timeout_seconds = timeout_seconds

    def scores(self, tenant_id: str, brand: str, target: str) -> list[float] | None:
        """One score per question of the brand's set; None when the brand has no set or
        the target names no version."""
        path = evaluation_set_path(self.layout, tenant_id, brand)
        if not path.is_file():
            return None
        items = load_set(path)[: self.max_questions]
        try:
            adapter = self._resolve(tenant_id, brand, target)
        except NotFound:  # e.g. the adapter has no stable: nothing to compare with
            return None
        return self._run(lambda: self.answer(tenant_id, brand, target, adapter, items))

    async def answer(self, tenant_id: str, brand: str, target: str, adapter: AdapterRef | None,
                     items: Sequence[EvalItem]) -> list[float]:
        """One score per item: the brand's prompt for it, answered by ``adapter``."""
        chat, metrics = self._chat(), self._metrics()
        scores = []
        for n, item in enumerate(items):
            request = ChatRequest(brand=brand, temperature=0.0, seed=0, max_tokens=self.max_tokens,
                                  messages=[{"role": "user", "content": item.question}])
            prepared = await chat.prepare(tenant_id, request)
            prepared = replace(prepared, adapter=adapter, target=target,
                               request_id=f"gate-{request.request_id}-{n}")
            text = "".join([chunk.text async for chunk in chat.generate(prepared)])
            retrieved = list(dict.fromkeys(c.document_id for c in prepared.citations))
            scored = await asyncio.to_thread(
                metrics.score, question=item.question, answer=text, sources=prepared.sources,
                reference=item.reference, retrieved_ids=retrieved, gold_ids=item.gold_ids)
            scores.append(answer_score(scored))
        return scores

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        engine: InferenceEngine = self._chat().engine
        loop: asyncio.AbstractEventLoop | None = getattr(engine, "loop", None)
        if loop is not None and not loop.is_closed() and engine.ready():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                raise RuntimeError("the answer gate blocks: call it from a worker thread")
            return asyncio.run_coroutine_threadsafe(make(), loop).result(self.timeout_seconds)

        async def with_engine() -> T:
            await engine.warm_up()
            try:
                return await make()
            finally:
                await engine.shutdown()

        return asyncio.run(with_engine())
