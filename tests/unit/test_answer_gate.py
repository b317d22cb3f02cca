"""The answer-level promotion gate as the container wires it: the brand's evaluation set
answered by the candidate and by the stable through the chat path (fake engine whose
answers depend on the adapter version, fake support judge), paired bootstrap, decision."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from lorag.app.chat import ChatService
from lorag.app.quality.metrics import AnswerMetrics
from lorag.app.rollouts.evaluation_sets import evaluation_set_path
from lorag.app.rollouts.scoring import EvaluationScorer
from lorag.app.settings import ChatSettings
from lorag.core.errors import Conflict
from tests.adapter_fixtures import app  # noqa: F401  (container on the tiny model)
from tests.unit.chat_fakes import FakeAdapters, FakeBrands, FakeEngine, FakeRetrieval, hit

REPORT = {"heldout": {"base_perplexity": 10.0, "adapter_perplexity": 5.0},
          "general": {"perplexity_ratio": 1.0}}
GOOD = "Returns take thirty days [1]."
BAD = "The moon is made of cheese."


class VersionEngine(FakeEngine):
    """Answers GOOD or BAD by the adapter version that generates (``answers[version]``)."""

    def __init__(self, answers: dict[int | None, str]):
        super().__init__(max_model_len=4000)
        self.answers, self.versions = answers, []

    async def generate(self, request):
        version = request.adapter.version if request.adapter else None
        self.versions.append(version)
        self.reply = (self.answers[version],)
        async for chunk in super().generate(request):
            yield chunk


class OnesEmbedder:
    def embed_documents(self, texts):
        return np.full((len(texts), 4), 0.5, dtype=np.float32)


class WordJudge:
    """Support 1 for a claim every word of which is in a passage, else 0."""

    def support(self, claims, passages):
        words = [set(p.lower().replace(".", "").split()) for p in passages]
        return np.array([[float(set(c.lower().strip(".").replace(" [1]", "").split()) <= w)
                          for w in words] for c in claims], dtype=np.float32)


@pytest.fixture
def setup(app, tmp_path, tiny_lora_factory):  # noqa: F811
    for seed in (1, 2):
        folder = tmp_path / f"lora{seed}"
        shutil.copytree(tiny_lora_factory(seed=seed), folder)
        (folder / "metrics.json").write_text(json.dumps(REPORT))
        app.adapters.register("acme", "voice", folder)
    app.brands.create("acme", "support", adapter="voice", system_prompt="Be brief.")
    path = evaluation_set_path(app.layout, "acme", "support")
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"question": f"How long for returns, case {i}?"}) + "\n"
                            for i in range(12)))

    def use(answers: dict[int | None, str]) -> VersionEngine:
        engine = VersionEngine(answers)
        engine.warmed = True
        source = "Returns take thirty days."
        chat = ChatService(brands=app.brands, adapters=FakeAdapters(),
                           retrieval=FakeRetrieval([replace(hit(1), text=source)]),
                           engine=engine, settings=ChatSettings(default_max_tokens=20))
        app.rollouts.scorer = EvaluationScorer(
            layout=app.layout, chat=lambda: chat, resolve=app.rollouts.resolve,
            metrics=lambda: AnswerMetrics(OnesEmbedder(), judge=WordJudge()), max_questions=10)
        return engine

    return app, use


def test_a_worse_candidate_is_refused_naming_the_answer_gate(setup):
    app, use = setup
    engine = use({1: GOOD, 2: BAD})
    with pytest.raises(Conflict) as refused:
        app.rollouts.promote("acme", "voice", 2)
    assert refused.value.code == "gates_failed"
    assert "answer_quality[support]" in refused.value.message
    assert "over 10 questions" in refused.value.message  # max_questions of the 12
    assert sorted(set(engine.versions)) == [1, 2] and len(engine.versions) == 20
    assert app.adapters.aliases("acme", "voice")["stable"] == 1  # nothing moved


@pytest.mark.parametrize("answers", [{1: BAD, 2: GOOD}, {1: GOOD, 2: GOOD}])
def test_a_better_or_equal_candidate_passes(setup, answers):
    app, use = setup
    use(answers)
    decision = app.rollouts.promote("acme", "voice", 2)
    gate = next(g for g in decision["gates"] if g["gate"] == "answer_quality[support]")
    assert gate["passed"] is True and decision["forced"] is False
    assert app.adapters.aliases("acme", "voice")["stable"] == 2


def test_a_brand_without_an_evaluation_set_has_no_answer_gate(setup):
    app, use = setup
    use({1: GOOD, 2: BAD})
    evaluation_set_path(app.layout, "acme", "support").unlink()
    [gate] = [g for g in app.rollouts.gates("acme", "voice", 2)
              if g.name == "answer_quality[support]"]
    assert gate.passed is None  # does not apply, so it cannot refuse
    assert app.rollouts.promote("acme", "voice", 2)["forced"] is False
