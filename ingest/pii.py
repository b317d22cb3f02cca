"""PII detection and redaction with Presidio's pattern recognizers.

Presidio's analyzer normally builds a spaCy pipeline (a model download). Here it runs
with Presidio's ``NoOpNlpEngine`` and only recognizers that need no NLP artifacts:
regular expressions with checksums (credit cards: Luhn; IBAN: mod 97; US SSN and UK
NHS: their rules) and ``phonenumbers`` for phone numbers. Names of people and places
need an NER model and are not detected; a tenant's deny-list covers known terms.

Redaction replaces each finding with its typed placeholder (``<EMAIL_ADDRESS>``,
``<DENY_LIST>``) using Presidio's anonymizer. Used at ingestion (before anything is
stored, embedded or indexed: ``ingest/service.py``) and on chat output
(``lorag/app/chat.py``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

from pydantic import BaseModel, Field

from lorag.core.plugins import Registry

log = logging.getLogger(__name__)

DENY_LIST = "DENY_LIST"


class PiiMode(str, Enum):
    """What ingestion does with PII: nothing, count it (``flag``), or replace it."""

    OFF = "off"
    FLAG = "flag"
    REDACT = "redact"


PII_RECOGNIZERS: Registry[Callable[[], object]] = Registry("PII entity")


def _recognizer(entity: str, class_name: str, **kwargs) -> None:
    def build():
        from presidio_analyzer import predefined_recognizers

        return getattr(predefined_recognizers, class_name)(**kwargs)

    PII_RECOGNIZERS.register(entity)(build)


_recognizer("CREDIT_CARD", "CreditCardRecognizer")
_recognizer("IBAN_CODE", "IbanRecognizer")
_recognizer("IP_ADDRESS", "IpRecognizer")
_recognizer("US_SSN", "UsSsnRecognizer")
_recognizer("UK_NHS", "NhsRecognizer")
_recognizer("PHONE_NUMBER", "PhoneRecognizer")


@PII_RECOGNIZERS.register("EMAIL_ADDRESS")
def _email():
    """Presidio's email recognizer, checking the domain against tldextract's bundled
    suffix list: its default extractor fetches the list from the network first."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


class PiiSettings(BaseModel):
    """PII handling at ingestion; a brand chooses output redaction itself."""

    mode: PiiMode = Field(PiiMode.OFF, description="off, flag (count in the job record) or "
                          "redact (typed placeholders such as <EMAIL_ADDRESS>) for every tenant "
                          "without an entry in ``tenants``.")
    tenants: dict[str, PiiMode] = Field(
        default_factory=dict, description="Per-tenant mode, overriding ``mode``.")
    entities: list[str] = Field(
        default_factory=lambda: ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE",
                                 "IP_ADDRESS", "US_SSN", "UK_NHS"],
        description="Presidio entity types detected (pattern recognizers only).")
    score_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="Findings scored lower are ignored (Presidio's "
        "phone numbers score 0.4 without context words).")
    deny_lists: dict[str, list[str]] = Field(
        default_factory=dict, description="Per-tenant terms always redacted (as <DENY_LIST>), "
        "matched as whole words, case-insensitively.")

    def mode_for(self, tenant: str) -> PiiMode:
        return self.tenants.get(tenant, self.mode)

    def deny_list(self, tenant: str) -> list[str]:
        return [term for term in self.deny_lists.get(tenant, []) if term.strip()]


@dataclass(frozen=True)
class PiiFinding:
    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Redaction:
    """Text after redaction and the number of findings per entity type."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


class PiiRedactor:
    """Finds and replaces PII; cheap to construct, ``warm_up()`` builds the analyzer
    (about 0.3 s). Safe for concurrent use."""

    def __init__(self, settings: PiiSettings):
        self.settings = settings
        for entity in settings.entities:
            PII_RECOGNIZERS.get(entity, param="ingest.pii.entities")
        self._analyzer = None
        self._anonymizer = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._analyzer is not None:
                return
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NoOpNlpEngine
            from presidio_anonymizer import AnonymizerEngine

            nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
            nlp.load()
            registry = RecognizerRegistry(
                recognizers=[PII_RECOGNIZERS.get(e)() for e in self.settings.entities],
                supported_languages=["en"])
            self._anonymizer = AnonymizerEngine()
            self._analyzer = AnalyzerEngine(nlp_engine=nlp, registry=registry,
                                            supported_languages=["en"])
            log.info("PII analyzer ready entities=%s", ",".join(self.settings.entities))

    def find(self, text: str, *, deny_list: Sequence[str] = ()) -> list[PiiFinding]:
        """Findings in ``text``, longest first where two overlap."""
        return [PiiFinding(r.entity_type, r.start, r.end, r.score)
                for r in self._analyze(text, deny_list)]

    def redact(self, text: str, *, deny_list: Sequence[str] = ()) -> Redaction:
        """``text`` with each finding replaced by ``<ENTITY_TYPE>``."""
        results = self._analyze(text, deny_list)
        if not results:
            return Redaction(text, {})
        done = self._anonymizer.anonymize(text, results)  # default: "<ENTITY_TYPE>"
        counts = Counter(item.entity_type for item in done.items)
        return Redaction(done.text, dict(counts))

    def _analyze(self, text: str, deny_list: Sequence[str]) -> list:
        if not text:
            return []
        self.warm_up()
        ad_hoc = [_deny_list_recognizer(deny_list)] if deny_list else None
        return self._analyzer.analyze(text, language="en", score_threshold=self.settings.score_threshold,
                                      ad_hoc_recognizers=ad_hoc)


def _deny_list_recognizer(terms: Sequence[str]):
    from presidio_analyzer import PatternRecognizer

    return PatternRecognizer(supported_entity=DENY_LIST, deny_list=list(terms),
                             name="tenant deny-list")
