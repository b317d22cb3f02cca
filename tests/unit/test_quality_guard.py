"""The brand's answer checks with fakes (lorag/app/quality/guard.py, ChatService.check):
flag, abstain, off, output redaction (also split across stream deltas), and the brand's
quality settings in the catalog (validation, an older catalog without the column)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest

from ingest.pii import PiiRedactor, PiiSettings
from lorag.app.chat import ChatRequest, ChatService
from lorag.app.quality.guard import AnswerChecks, StreamRedactor
from lorag.app.quality.metrics import AnswerMetrics
from lorag.app.settings import ChatSettings
from lorag.core.brands import BrandQuality, BrandStore, GroundingMode
from lorag.core.db import Database
from lorag.core.errors import InvalidInput
from retrieval.embedders import FakeEmbedder
from tests.unit.chat_fakes import FakeAdapters, FakeBrands, FakeEngine, FakeRetrieval, hit, make_brand
from tests.unit.test_answer_metrics import WordJudge

# the sources are "w1 w1 w1 w1 w1", "w2 ..."; the reply's first sentence is supported by [1]
REPLY = ("W1 w1 [1]. ", "Mail jane.roe@example.com", " or call (212) 555-0142. ", "Zebra jumps.")


def service(quality: BrandQuality, *, pii: PiiSettings | None = None) -> ChatService:
    checks = AnswerChecks(lambda: FakeEmbedder(), PiiRedactor(pii or PiiSettings()))
    checks.metrics = AnswerMetrics(FakeEmbedder(), judge=WordJudge(), threshold=0.5)
    brand = replace(make_brand("support"), quality=quality)
    return ChatService(brands=FakeBrands({("acme", "support"): brand}), adapters=FakeAdapters(),
                       retrieval=FakeRetrieval([hit(i) for i in range(1, 4)]),
                       engine=FakeEngine(reply=REPLY), settings=ChatSettings(default_max_tokens=50),
                       checks=checks)


def ask() -> ChatRequest:
    return ChatRequest(brand="support", messages=[{"role": "user", "content": "w1?"}])


def test_flag_reports_score_and_unsupported_sentences():
    result = asyncio.run(service(BrandQuality(GroundingMode.FLAG, 0.5)).complete("acme", ask()))
    assert result.text == "".join(REPLY)
    verdict = result.grounding
    assert verdict.groundedness == pytest.approx(1 / 3) and verdict.grounded is False
    assert verdict.unsupported == ("Mail jane.roe@example.com or call (212) 555-0142.",
                                   "Zebra jumps.")
    assert verdict.abstained is False and verdict.mode == "flag"


def test_abstain_replaces_an_ungrounded_answer_and_passes_a_grounded_one():
    careful = BrandQuality(GroundingMode.ABSTAIN, 0.5, fallback="No idea.")
    result = asyncio.run(service(careful).complete("acme", ask()))
    assert result.text == "No idea." and result.grounding.abstained
    lenient = replace(careful, threshold=0.3)
    result = asyncio.run(service(lenient).complete("acme", ask()))
    assert result.text == "".join(REPLY) and result.grounding.grounded


def test_a_stream_is_flagged_not_replaced():
    chat = service(BrandQuality(GroundingMode.ABSTAIN, 0.5))
    prepared = asyncio.run(chat.prepare("acme", ask()))
    text, verdict = asyncio.run(chat.check(prepared, "Zebra jumps.", streamed=True))
    assert text == "Zebra jumps." and not verdict.grounded and not verdict.abstained


def test_off_checks_nothing_and_redaction_is_per_brand():
    result = asyncio.run(service(BrandQuality()).complete("acme", ask()))
    assert result.grounding is None and "jane.roe@example.com" in result.text
    pii = PiiSettings(deny_lists={"acme": ["zebra"]})
    result = asyncio.run(service(BrandQuality(redact_output=True), pii=pii).complete("acme", ask()))
    assert result.text == ("W1 w1 [1]. Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>. "
                           "<DENY_LIST> jumps.")


def test_stream_redaction_catches_a_number_split_across_deltas():
    checks = AnswerChecks(lambda: FakeEmbedder(), PiiRedactor(PiiSettings()))
    stream = checks.stream_redactor("acme", BrandQuality(redact_output=True))
    pieces = [stream.feed(d) for d in ("Call (212) 55", "5-0142 now. Then", " write to a@b.io")]
    pieces.append(stream.flush())
    assert pieces[0] == "" and "".join(pieces) == "Call <PHONE_NUMBER> now. Then write to <EMAIL_ADDRESS>"
    assert checks.stream_redactor("acme", BrandQuality()) is None
    assert isinstance(stream, StreamRedactor) and stream.emitted == "".join(pieces)


@pytest.mark.parametrize("quality, param", [
    ({"grounding": "sometimes"}, "quality.grounding"),
    ({"threshold": 1.5}, "quality.threshold"),
    ({"threshold": True}, "quality.threshold"),
    ({"fallback": " "}, "quality.fallback"),
    ({"redact_output": "yes"}, "quality.redact_output"),
    ({"colour": "red"}, "quality.colour"),
    ("flag", "quality"),
])
def test_bad_brand_quality_names_the_field(quality, param):
    with pytest.raises(InvalidInput) as raised:
        BrandQuality.parse(quality)
    assert raised.value.param == param


class Adapters:
    def exists(self, tenant_id: str, name: str) -> bool:
        return False


def test_brand_quality_round_trips_and_an_old_catalog_gains_the_column(tmp_path):
    path = tmp_path / "catalog.sqlite"
    with sqlite3.connect(path) as conn:  # a catalog from before the column existed
        conn.executescript(
            "CREATE TABLE tenants (id TEXT PRIMARY KEY);"
            "INSERT INTO tenants VALUES ('acme');"
            "CREATE TABLE brands (tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
            " name TEXT NOT NULL, adapter_name TEXT, system_prompt TEXT NOT NULL DEFAULT '',"
            " retrieval TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL,"
            " updated_at REAL NOT NULL, PRIMARY KEY (tenant_id, name));"
            "INSERT INTO brands VALUES ('acme', 'old', NULL, '', '{}', 1, 1);")
    store = BrandStore(Database(path), Adapters())
    assert store.get("acme", "old").quality == BrandQuality()
    store.create("acme", "new", quality={"grounding": "abstain", "threshold": 0.8})
    assert store.get("acme", "new").quality == BrandQuality(GroundingMode.ABSTAIN, 0.8)
    store.update("acme", "new", quality={"grounding": "flag"})
    assert store.get("acme", "new").quality.grounding is GroundingMode.FLAG
    assert store.get("acme", "new").to_dict()["quality"]["grounding"] == "flag"
    BrandStore(Database(path), Adapters())  # adding the column twice is harmless


def test_the_cli_sets_a_brands_quality(tmp_path, monkeypatch, capsys):
    from lorag.app.container import Lorag
    from lorag.cli.main import main

    monkeypatch.setenv("LORAG_DATA_DIR", str(tmp_path / "data"))
    app = Lorag()
    app.tenants.create("acme")
    app.close()
    assert main(["brands", "create", "--tenant", "acme", "b", "--quality",
                 '{"grounding": "abstain", "threshold": 0.7}']) == 0
    assert '"grounding": "abstain"' in capsys.readouterr().out
    assert main(["brands", "update", "--tenant", "acme", "b", "--quality", "{oops"]) == 2
    assert main(["brands", "update", "--tenant", "acme", "b", "--quality",
                 '{"threshold": -1}']) == 2
    assert "quality.threshold" in capsys.readouterr().err
