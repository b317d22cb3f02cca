"""Chat evaluation behind ``lorag eval chat``: a brand answers a set of questions through
the real chat path (retrieval, prompt budget, engine), and each answer is scored with
the answer metrics; means come with bootstrap intervals, and a second brand run on the
same questions gives paired differences (per-question difficulty cancels).

The set is JSON Lines, one question per line::

    {"question": "How long is the warranty?", "reference": "Two years.", "gold_ids": ["warranty"]}

``reference`` (for token F1 and ROUGE-L) and ``gold_ids`` (for context precision and
recall) are optional. Answers are sampled greedily (temperature 0) so runs repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lorag.app.chat import ChatRequest, ChatService
from lorag.app.quality.metrics import AnswerMetrics, AnswerScores, bootstrap_ci, paired_difference
from lorag.core.errors import InvalidInput
from lorag.core.jobs import Progress

log = logging.getLogger(__name__)

FIELDS = {"question", "reference", "gold_ids", "id"}


@dataclass(frozen=True)
class EvalItem:
    line: int
    question: str
    reference: str | None = None
    gold_ids: tuple[str, ...] | None = None


def load_set(path: Path) -> list[EvalItem]:
    """The items of a set file; raises InvalidInput naming the line and the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the set file {path}: {exc}", param="set") from None
    return parse_set(text, str(path))


def parse_set(text: str, source: str, *, param: str = "set") -> list[EvalItem]:
    """The items of a set given as JSON Lines ``text`` (``source`` names it in errors);
    raises InvalidInput naming the line and the field (``param`` when it has none)."""
    items = [_item(source, n, line) for n, line in enumerate(text.splitlines(), start=1)
             if line.strip()]
    if not items:
        raise InvalidInput(f"{source}: the set has no questions", param=param)
    return items


def _item(source: str, n: int, line: str) -> EvalItem:
    def bad(field: str, problem: str) -> InvalidInput:
        return InvalidInput(f"{source} line {n}: {problem}", param=f"line {n}: {field}")

    try:
        row = json.loads(line)
    except ValueError as exc:
        raise bad("json", f"not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise bad("json", "each line must be a JSON object")
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise bad(unknown[0], f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(FIELDS))}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad("question", "question must be a non-empty string")
    reference = row.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise bad("reference", "reference must be a string")
    gold = row.get("gold_ids")
    if gold is not None and (not isinstance(gold, list) or not gold
                             or not all(isinstance(g, str) and g for g in gold)):
        raise bad("gold_ids", "gold_ids must be a non-empty list of document ids")
    return EvalItem(n, question, reference, tuple(gold) if gold is not None else None)


@dataclass(frozen=True)
class Answered:
    item: EvalItem
    answer: str
    scores: AnswerScores

    def to_dict(self) -> dict:
        return {"line": self.item.line, "question": self.item.question, "answer": self.answer,
                **self.scores.metrics(), "unsupported": list(self.scores.unsupported),
                "invalid_citations": list(self.scores.invalid_citations)}


async def answer_set(chat: ChatService, metrics: AnswerMetrics, tenant: str, brand: str,
                     items: Sequence[EvalItem], progress: Progress,
                     max_tokens: int | None = None) -> list[Answered]:
    """The brand's raw answer to each item (before any guard), scored."""
    answered = []
    for item in items:
        request = ChatRequest(brand=brand, messages=[{"role": "user", "content": item.question}],
                              temperature=0.0, seed=0, max_tokens=max_tokens)
        prepared = await chat.prepare(tenant, request)
        text = "".join([chunk.text async for chunk in chat.generate(prepared)])
        retrieved = list(dict.fromkeys(c.document_id for c in prepared.citations))
        scores = await asyncio.to_thread(
            metrics.score, question=item.question, answer=text, sources=prepared.sources,
            reference=item.reference, retrieved_ids=retrieved, gold_ids=item.gold_ids)
        answered.append(Answered(item, text, scores))
        progress.advance()
    return answered


def summary(answered: Sequence[Answered]) -> dict:
    """Each metric's mean with a 95% bootstrap interval (over the answers defining it)."""
    return {name: bootstrap_ci([a.scores.metrics()[name] for a in answered]).to_dict()
            for name in AnswerScores.NUMERIC}


def differences(first: Sequence[Answered], second: Sequence[Answered]) -> dict:
    """Per metric: mean of (first - second) over the same questions, with its interval."""
    return {name: paired_difference([a.scores.metrics()[name] for a in first],
                                    [b.scores.metrics()[name] for b in second]).to_dict()
            for name in AnswerScores.NUMERIC}


async def evaluate_chat(chat: ChatService, metrics: AnswerMetrics, tenant: str, brand: str,
                        items: Sequence[EvalItem], *, against: str | None = None,
                        max_tokens: int | None = None, bar: bool = False) -> dict:
    """The report of ``lorag eval chat``; ``against`` is a second brand of the tenant."""
    brands = [brand] + ([against] if against else [])
    progress = Progress(None, None, len(items) * len(brands), description=f"eval {tenant}", bar=bar)
    runs = {}
    try:
        for name in brands:
            runs[name] = await answer_set(chat, metrics, tenant, name, items, progress,
                                          max_tokens)
    finally:
        progress.finish()
    report = {"tenant": tenant, "brand": brand, "questions": len(items),
              "support_threshold": metrics.threshold,
              "brands": {name: {"metrics": summary(run), "answers": [a.to_dict() for a in run]}
                         for name, run in runs.items()}}
    if against:
        report["against"] = against
        report["differences"] = differences(runs[brand], runs[against])
    return report
