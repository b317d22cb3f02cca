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


PII_RECOGNIZERS: Registry[Callable[[], list]] = Registry("PII entity")


def _recognizer(entity: str, class_name: str, **kwargs) -> None:
    def build() -> list:
        from presidio_analyzer import predefined_recognizers

        return [getattr(predefined_recognizers, class_name)(**kwargs)]

    PII_RECOGNIZERS.register(entity)(build)


_recognizer("IBAN_CODE", "IbanRecognizer")
_recognizer("IP_ADDRESS", "IpRecognizer")
_recognizer("US_SSN", "UsSsnRecognizer")
_recognizer("UK_NHS", "NhsRecognizer")


@PII_RECOGNIZERS.register("CREDIT_CARD")
def _credit_card() -> list:
    """Presidio's card recognizer (Luhn-checked) with Mastercard's 2-series numbers
    (2221-2720, issued since 2017), which its pattern does not cover."""
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    two_series = Pattern("Mastercard 2-series", r"\b2(?:2[2-9]\d|[3-6]\d{2}|7[01]\d|720)"
                         r"[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3)
    return [CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS, two_series])]


PHONE_REGIONS = ("US", "GB", "CA", "IN", "IL", "BR")


@PII_RECOGNIZERS.register("PHONE_NUMBER")
def _phone() -> list:
    """Presidio's phone recognizer (``phonenumbers``, valid numbers of its regions), and
    North American numbers written with separators whatever their area code: a number
    with an unassigned area code is not "valid" to phonenumbers but leaks all the same."""
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    nanp = Pattern("NANP with separators", r"(?<![\w+])(?:(?:\+|00)?1[-. ]?)?(?:\(\d{3}\)\s?|\d{3}[-. ])"
                   r"\d{3}[-. ]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?\b", 0.4)
    # Presidio's default regions include DE, where any 6-digit group is a valid local
    # number (order numbers, amounts); numbers in international form (+49 ...) are found
    # from every region
    return [PhoneRecognizer(supported_regions=PHONE_REGIONS),
            PatternRecognizer(supported_entity="PHONE_NUMBER", patterns=[nanp],
                              name="NanpPhoneRecognizer")]


@PII_RECOGNIZERS.register("EMAIL_ADDRESS")
def _email() -> list:
    """Presidio's email recognizer, checking the domain against tldextract's bundled
    suffix list: its default extractor fetches the list from the network first."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return [OfflineEmailRecognizer()]


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
                recognizers=[r for e in self.settings.entities for r in PII_RECOGNIZERS.get(e)()],
                supported_languages=["en"])
            self._anonymizer = AnonymizerEngine()
            self._analyzer = AnalyzerEngine(nlp_engine=nlp, registry=registry,
                                            supported_languages=["en"])
            log.info("PII analyzer ready entities=%s", ",".join(self.settings.entities))

    def find(self, text: str, *, deny_list: Sequence[str] = ()) -> list[PiiFinding]:
        """Findings in ``text``; a finding inside a higher-scored one of another type (a
        card number also read as a phone number) is left out."""
        results = self._analyze(text, deny_list)
        return [PiiFinding(r.entity_type, r.start, r.end, r.score) for r in results
                if not any(o is not r and o.start <= r.start and r.end <= o.end
                           and o.score > r.score for o in results)]

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
