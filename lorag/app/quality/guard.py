"""The checks a brand puts on its answers: the grounding guard and output PII redaction.

- grounding ``flag``: the answer goes out with its groundedness, the brand's threshold
  and the unsupported sentences (an extension field of the response, and of the last
  event of a stream);
- grounding ``abstain``: a non-streamed answer below the threshold is replaced by the
  brand's fallback text, and the verdict says so (a stream's text is already sent: it is
  flagged instead);
- ``redact_output``: PII (and the tenant's deny-list) in the answer becomes typed
  placeholders, in streams too (text is held back to the next sentence end, so a phone
  number split across two deltas is still caught).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Callable, Sequence

from ingest.pii import PiiRedactor
from lorag.app.quality.metrics import DEFAULT_THRESHOLD, AnswerMetrics
from lorag.core.brands import BrandQuality, GroundingMode
from retrieval.embedders import Embedder

_BOUNDARY = re.compile(r"[.!?]\s|\n")


@dataclass(frozen=True)
class GroundingVerdict:
    """The guard's finding on one answer. ``groundedness`` is None for an answer without
    sentences (nothing to support; it passes)."""

    mode: str
    groundedness: float | None
    threshold: float
    grounded: bool
    abstained: bool
    unsupported: tuple[str, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "unsupported": list(self.unsupported)}


class AnswerChecks:
    """Applies a brand's ``BrandQuality`` to an answer. Cheap to build: the metrics and
    the PII analyzer load on first use. Safe for concurrent use."""

    def __init__(self, embedder: Callable[[], Embedder], redactor: PiiRedactor, *,
                 support_threshold: float = DEFAULT_THRESHOLD):
        self._embedder = embedder
        self.redactor = redactor  # shared with ingestion: one analyzer per process
        self.pii_settings = redactor.settings
        self.support_threshold = support_threshold

    @cached_property
    def metrics(self) -> AnswerMetrics:
        return AnswerMetrics(self._embedder(), threshold=self.support_threshold)

    def grounding(self, quality: BrandQuality, answer: str,
                  sources: Sequence[str], *, streamed: bool) -> GroundingVerdict | None:
        """The verdict (None when the brand's guard is off)."""
        if quality.grounding is GroundingMode.OFF:
            return None
        found = self.metrics.grounding(answer, sources)
        score = found.groundedness
        grounded = score is None or score >= quality.threshold
        abstained = not grounded and not streamed and quality.grounding is GroundingMode.ABSTAIN
        return GroundingVerdict(quality.grounding.value, score, quality.threshold, grounded,
                                abstained, found.unsupported)

    def redact(self, tenant: str, quality: BrandQuality, text: str) -> str:
        if not quality.redact_output:
            return text
        return self.redactor.redact(text, deny_list=self.pii_settings.deny_list(tenant)).text

    def stream_redactor(self, tenant: str, quality: BrandQuality) -> "StreamRedactor | None":
        if not quality.redact_output:
            return None
        return StreamRedactor(lambda text: self.redact(tenant, quality, text))


class StreamRedactor:
    """Redacts a stream of text deltas: holds text back to the last sentence end or line
    break, so that a finding is never split between two emitted pieces."""

    def __init__(self, redact: Callable[[str], str]):
        self._redact = redact
        self._pending = ""
        self.emitted = ""  # everything sent so far (redacted)

    def feed(self, delta: str) -> str:
        self._pending += delta
        cut = max((m.end() for m in _BOUNDARY.finditer(self._pending)), default=0)
        if not cut:
            return ""
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._emit(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return self._emit(ready) if ready else ""

    def _emit(self, text: str) -> str:
        out = self._redact(text)
        self.emitted += out
        return out
