"""PII with Presidio's pattern recognizers (ingest/pii.py) and at ingestion
(ingest/service.py): typed placeholders, deny-lists, counts, flag vs redact, and the
original never reaching the store."""

from __future__ import annotations

import pytest

from ingest.pii import PiiMode, PiiRedactor, PiiSettings
from ingest.types import DocumentInput
from lorag.core.errors import UnknownName
from lorag.testing.settings import fast_settings
from lorag.app.container import Lorag

TEXT = ("Mail jane.roe@example.com or call (212) 555-0142. Card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, host 10.1.2.3, SSN 536-22-1234.")


@pytest.fixture(scope="module")
def redactor():
    return PiiRedactor(PiiSettings())


def test_each_entity_becomes_its_typed_placeholder(redactor):
    found = redactor.redact(TEXT)
    assert found.text == ("Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>. Card <CREDIT_CARD>, "
                          "IBAN <IBAN_CODE>, host <IP_ADDRESS>, SSN <US_SSN>.")
    assert found.counts == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1, "CREDIT_CARD": 1,
                            "IBAN_CODE": 1, "IP_ADDRESS": 1, "US_SSN": 1}


def test_checksums_are_checked(redactor):
    # a 16-digit number failing Luhn is not a card; an IBAN with a wrong check digit is not one
    assert redactor.redact("Order 4111 1111 1111 1112 and DE00 3704 0044 0532 0130 00").counts == {}


def test_deny_list_terms_are_whole_words_any_case(redactor):
    found = redactor.redact("project falcon and Project Falconry ship.", deny_list=["Project Falcon"])
    assert found.text == "<DENY_LIST> and Project Falconry ship."
    assert redactor.redact("", deny_list=["x"]).text == ""


def test_unknown_entities_are_refused_with_the_valid_names():
    with pytest.raises(UnknownName) as raised:
        PiiRedactor(PiiSettings(entities=["EMAIL_ADDRESS", "SHOE_SIZE"]))
    assert raised.value.param == "ingest.pii.entities" and "CREDIT_CARD" in raised.value.message


def _app(tmp_path, **pii) -> Lorag:
    settings = fast_settings(tmp_path / "data")
    settings.ingest.pii = PiiSettings(**pii)
    app = Lorag(settings)
    app.tenants.create("acme")
    return app


DOC = DocumentInput(id="d1", title="Call (212) 555-0142", text="Write to jane.roe@example.com "
                    "about Project Falcon today.", metadata={"owner": "jane.roe@example.com"})


def test_redact_at_ingestion_stores_only_placeholders(tmp_path):
    app = _app(tmp_path, tenants={"acme": PiiMode.REDACT}, deny_lists={"acme": ["Project Falcon"]})
    try:
        report = app.documents.ingest("acme", [DOC])
        assert report.pii == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1, "DENY_LIST": 1}
        stored = app.documents.get("acme", "d1")
        assert stored.title == "Call <PHONE_NUMBER>" and stored.metadata == {"owner": "<EMAIL_ADDRESS>"}
        texts = app.retrieval.document_texts("acme")
        assert texts == ["Write to <EMAIL_ADDRESS> about <DENY_LIST> today."]
        assert app.documents.ingest("acme", [DOC]).unchanged == 1  # same policy: nothing to do
    finally:
        app.close()


def test_flag_counts_and_keeps_the_text_and_off_does_nothing(tmp_path):
    app = _app(tmp_path, mode=PiiMode.FLAG, tenants={"beta": PiiMode.OFF})
    try:
        app.tenants.create("beta")
        assert app.documents.ingest("acme", [DOC]).pii == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}
        assert "jane.roe@example.com" in app.retrieval.document_texts("acme")[0]
        assert app.documents.ingest("beta", [DOC]).pii == {}
    finally:
        app.close()


def test_the_job_record_carries_the_counts(tmp_path):
    app = _app(tmp_path, mode=PiiMode.REDACT)
    try:
        job_id = app.documents.start_job("acme", [DOC])
        assert app.documents.wait(job_id, timeout=60)
        assert app.jobs.get("acme", job_id).result["pii"] == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}
    finally:
        app.close()


def test_screening_moves_segment_spans_to_the_redacted_text():
    from ingest.service import screen_segments
    from ingest.structure import Segment

    text = "intro SECRET. head SECRET body. tail"
    segments = (Segment(6, 13, {"section": "A SECRET"}), Segment(14, 31, {"page": 2}))
    screened, moved = screen_segments(text, segments, lambda s: s.replace("SECRET", "<X>"))
    assert screened == "intro <X>. head <X> body. tail"
    assert [screened[s.start:s.end] for s in moved] == ["<X>.", "head <X> body."]
    assert [s.location for s in moved] == [{"section": "A <X>"}, {"page": 2}]


def test_structured_documents_are_redacted_in_their_sections_and_headings(tmp_path):
    guide = tmp_path / "support.md"
    guide.write_text("# Contact jane.roe@example.com\n\nCall (212) 555-0142 about returns.\n\n"
                     "## Opening hours\n\nThe desk opens at nine on weekdays.\n")
    app = _app(tmp_path, tenants={"acme": PiiMode.REDACT})
    try:
        assert set(app.documents.ingest("acme", [guide]).pii) == {"EMAIL_ADDRESS", "PHONE_NUMBER"}
        assert "jane.roe" not in str(app.documents.get("acme", "support.md"))
        hits = app.retrieval.search("acme", "desk opens nine weekdays", k=5, mode="lexical")
        stored = " ".join(f"{h.text} {h.metadata}" for h in hits)
        assert hits and "jane.roe" not in stored and "555-0142" not in stored
        hours = [h for h in hits if "desk opens" in h.text]
        # the section's span moved with the shorter redacted text above it: no cut words
        assert [h.text.strip() for h in hours] == ["## Opening hours\n\nThe desk opens at nine on weekdays."]
        assert hours[0].metadata.get("section") == "Contact <EMAIL_ADDRESS> > Opening hours"
    finally:
        app.close()
