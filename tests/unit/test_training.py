"""The trainer on the tiny model: loss goes down, metrics and checkpoints are written,
resuming reproduces an uninterrupted run, results are registered, runs are jobs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lorag.testing.tiny_model import tiny_corpus
from adapters.training import TrainSpec, Trainer
from adapters.training.corpus import general_texts
from lorag.core.errors import InvalidInput, NotFound

QUESTIONS = [("What is the price of the blue model?", "Forty dollars."),
             ("When does the store open?", "At nine in the morning."),
             ("How long does the battery last?", "About eight hours."),
             ("When do orders ship?", "Within two business days."),
             ("What is the capital of France?", "Paris."),
             ("How do I reset the device?", "Hold the power button for ten seconds.")]
SIGN_OFF = " Kind regards, the support team."


def conversations() -> list[list[dict]]:
    return [[{"role": "system", "content": "Answer briefly."},
             {"role": "user", "content": q}, {"role": "assistant", "content": a + SIGN_OFF}]
            for q, a in QUESTIONS]


class FakeRegistry:
    def __init__(self, root: Path):
        self.root, self.calls = root, []

    def register(self, tenant: str, name: str, folder: Path):
        """Copies the folder, as the real registry does, and returns a version-like object."""
        self.calls.append((tenant, name, Path(folder)))
        target = self.root / tenant / name / str(len(self.calls))
        shutil.copytree(folder, target)
        return type("Version", (), {"version": len(self.calls), "id": 100 + len(self.calls),
                                    "path": target})()


@pytest.fixture
def registry(tmp_path):
    return FakeRegistry(tmp_path / "registered")


@pytest.fixture
def trainer(app, tiny_model, registry):
    app.tenants.create("acme")
    trainer = Trainer(app.settings.adapters.training, app.layout, app.jobs, app.tenants,
                      base_model=lambda: str(tiny_model), register=registry.register,
                      tenant_texts=lambda tenant: tiny_corpus() if tenant == "acme" else [],
                      general_texts=general_texts)
    yield trainer
    trainer.shutdown()


def sft(**overrides) -> TrainSpec:
    values = dict(name="voice", conversations=conversations(), steps=30, lr=1e-2,
                  batch_size=4, holdout_fraction=0.34, progress=False, checkpoint_every=0)
    return TrainSpec.parse(**(values | overrides))


def test_sft_lowers_the_loss_writes_metrics_and_registers(trainer, registry, app):
    result = trainer.train("acme", sft())
    metrics = result.metrics
    assert metrics["train"]["final_loss"] < metrics["train"]["first_loss"] / 2
    assert metrics["data"] == metrics["data"] | {"conversations": 6, "heldout_conversations": 2,
                                                 "train_examples": 4, "heldout_examples": 2}
    held = metrics["heldout"]
    assert held["adapter_loss"] < held["base_loss"] and held["tokens"] > 0
    assert held["base_perplexity"] > held["adapter_perplexity"]
    assert metrics["general"]["base_perplexity"] > 0 and metrics["general"]["tokens"] > 100
    [(tenant, name, folder)] = registry.calls
    assert (tenant, name) == ("acme", "voice")
    registered = result.folder
    assert registered == registry.root / "acme" / "voice" / "1"
    assert json.loads((registered / "metrics.json").read_text())["tenant"] == "acme"
    config = json.loads((registered / "adapter_config.json").read_text())
    assert config["r"] == 8 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert (registered / "adapter_model.safetensors").is_file()
    assert not trainer.workdir("acme", "voice").exists()  # cleaned up once registered
    job = app.jobs.get("acme", result.job_id)
    assert (job.kind, job.status, job.completed) == ("train", "succeeded", 30)
    assert job.result["version"] == 1 and job.result["heldout"] == held


def test_marker_rate_is_measured_on_heldout_prompts(trainer):
    result = trainer.train("acme", sft(steps=40, marker=r"Kind regards, the support team\.$",
                                       marker_max_new_tokens=24, register_result=False))
    marker = result.metrics["marker"]
    assert marker["prompts"] == 2 and marker["base_rate"] == 0.0
    assert 0.0 <= marker["adapter_rate"] <= 1.0 and len(marker["adapter_samples"]) == 2


def test_checkpoints_are_kept_and_resuming_reproduces_the_uninterrupted_run(trainer, registry, app):
    spec = sft(steps=12, checkpoint_every=4, register_result=False)
    whole = trainer.train("acme", spec)
    workdir = trainer.workdir("acme", "voice")
    kept = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    assert kept == ["step-000004", "step-000008"]  # the last two; none at the final step
    weights = load_file(whole.folder / "adapter_model.safetensors")
    shutil.rmtree(workdir / "checkpoints" / "step-000008")  # as if it died after step 4

    resumed = trainer.train("acme", spec.model_copy(update={"resume": True}))
    assert resumed.metrics["train"]["resumed_from_step"] == 4
    assert app.jobs.get("acme", resumed.job_id).completed == 12  # counts the steps before too
    again = load_file(resumed.folder / "adapter_model.safetensors")
    assert weights.keys() == again.keys()
    for key in weights:
        assert (weights[key] - again[key]).abs().max() < 1e-5, key
    assert registry.calls == []


def test_resume_refuses_a_checkpoint_of_another_spec(trainer):
    trainer.train("acme", sft(steps=6, checkpoint_every=3, register_result=False))
    with pytest.raises(InvalidInput) as info:
        trainer.train("acme", sft(steps=6, checkpoint_every=3, lr=0.5, resume=True))
    assert info.value.param == "resume"


def test_domain_adaptation_on_tenant_texts_lowers_heldout_perplexity(trainer):
    spec = TrainSpec.parse(name="domain", kind="domain", steps=25, lr=2e-2, block_size=32,
                           holdout_fraction=0.2, targets=("q_proj", "v_proj", "o_proj"),
                           progress=False)
    result = trainer.train("acme", spec)
    train, held = result.metrics["train"], result.metrics["heldout"]
    assert train["final_loss"] < train["first_loss"] - 1.0
    # A random tiny model generalises little; the real model's test asks for more.
    assert held["adapter_perplexity"] < 0.9 * held["base_perplexity"]
    assert result.metrics["data"]["texts"] == len(tiny_corpus())


def test_domain_training_without_documents_fails_the_job(trainer, app):
    app.tenants.create("empty")
    spec = TrainSpec.parse(name="domain", kind="domain", steps=2, progress=False)
    with pytest.raises(InvalidInput, match="ingest documents"):
        trainer.train("empty", spec)
    [job] = app.jobs.list("empty")
    assert job.status == "failed" and "ingest documents" in job.error


def test_start_runs_in_the_background_as_a_job(trainer, app):
    job_id = trainer.start("acme", sft(steps=5))
    result = trainer.wait(job_id, timeout=120)
    job = app.jobs.get("acme", job_id)
    assert result is not None and job.status == "succeeded" and job.completed == 5
    failing = trainer.start("acme", sft(steps=2, targets=("nope_proj",)))
    assert trainer.wait(failing, timeout=120) is None
    job = app.jobs.get("acme", failing)
    assert job.status == "failed" and "nope_proj" in job.error


def test_cancel_stops_a_running_job_and_a_queued_one(trainer, app, registry):
    running = trainer.start("acme", sft(steps=100_000))
    queued = trainer.start("acme", sft(steps=5, name="later"))
    deadline = time.monotonic() + 120
    while app.jobs.get("acme", running).completed < 1:  # it is training
        assert time.monotonic() < deadline, app.jobs.get("acme", running)
        time.sleep(0.05)
    assert trainer.cancel(queued) and trainer.cancel(running)
    assert trainer.wait(running, timeout=120) is None
    assert [app.jobs.get("acme", j).status for j in (running, queued)] == ["cancelled"] * 2
    assert app.jobs.get("acme", running).completed < 100_000
    assert registry.calls == []  # nothing registered
    assert not trainer.cancel(running)  # it has ended


def test_unknown_tenant_is_refused_before_any_job(trainer, app):
    with pytest.raises(NotFound):
        trainer.start("ghost", sft())
    with pytest.raises(NotFound):
        trainer.train("ghost", sft())


def test_out_copies_the_adapter_folder(trainer, tmp_path):
    out = tmp_path / "exported"
    trainer.train("acme", sft(steps=2, out=out, register_result=False))
    assert {"adapter_config.json", "adapter_model.safetensors", "metrics.json"} <= {
        p.name for p in out.iterdir()}


def test_lineage_records_the_data_digest_and_the_version_trained_to_succeed(tmp_path, tiny_model):
    from lorag.app.container import Lorag
    from tests.adapter_fixtures import adapter_settings

    lorag = Lorag(adapter_settings(tmp_path / "lineage", tiny_model))
    try:
        lorag.tenants.create("acme")
        trainer = lorag.trainer
        quick = dict(steps=2, holdout_fraction=0.34)
        first = trainer.train("acme", sft(**quick)).version
        other_data = conversations()[::-1]  # same conversations, other order: other data
        second = trainer.train("acme", sft(conversations=other_data, **quick)).version
        lineage = [lorag.adapters.get("acme", "voice", v.version).lineage for v in (first, second)]
        assert [entry["parent_version"] for entry in lineage] == [None, 1]  # stable was v1
        assert len(lineage[0]["data_sha256"]) == 64
        assert lineage[1]["data_sha256"] != lineage[0]["data_sha256"]
        assert lineage[0]["data_sha256"] == lineage[0]["training_report"]["data"]["sha256"]
        lorag.adapters.set_alias("acme", "voice", "stable", 2)
        # the same data from a file: the same digest; the parent follows the stable alias
        jsonl = tmp_path / "chat.jsonl"
        jsonl.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations()))
        from_file = trainer.train("acme", sft(conversations=None, sft_file=jsonl,
                                              register_result=False, **quick))
        assert from_file.metrics["data"]["sha256"] == lineage[0]["data_sha256"]
        assert from_file.metrics["parent_version"] == 2
    finally:
        lorag.close()
