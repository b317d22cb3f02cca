"""The benchmark suite still runs: ``python -m bench.run --tiny`` end to end on tiny
inputs (so the suite cannot silently rot), and every benchmark keeps the command line
``bench.run`` drives.

The end-to-end run takes the benchmarks that cover the suite's own machinery in about
a minute and a half: retrieval (lorag and raw FAISS, the LlamaIndex retriever), ann,
scale (the vLLM engine and chat, more tenants than cache slots), ingest (rounds and
their intervals) and, when
``.bench-venv`` exists, the LlamaIndex ingestion; without it ``--no-baselines`` (a fresh
clone would otherwise spend minutes installing it). The others are checked for the
command line the suite drives; their bar computations run in test_bench_bars.py on
measurements shaped like their own (starting vLLM servers for each would take minutes).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from bench import baselines, report
from bench.common import REPO_DIR, Bar
from bench.run import BENCHES

TINY = ["retrieval", "ann", "scale", "ingest"]


@pytest.mark.parametrize("bench", BENCHES, ids=lambda b: b.name)
def test_every_benchmark_takes_the_suite_command_line(bench):
    module = importlib.import_module(bench.module)
    assert callable(getattr(module, "run", None)), f"{bench.module} has no run(opts)"
    done = subprocess.run([sys.executable, "-m", bench.module, "--help"], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    for flag in ("--quick", "--tiny", "--out"):
        assert flag in done.stdout


def test_tiny_suite_end_to_end(tmp_path):
    only = TINY + (["llamaindex"] if baselines.venv_python().exists() else [])
    flags = [] if "llamaindex" in only else ["--no-baselines"]
    done = subprocess.run([sys.executable, "-m", "bench.run", "--tiny", "--out-dir", str(tmp_path),
                           "--only", *only, *flags], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["benchmarks"]) == set(only)
    for name, bench in data["benchmarks"].items():
        assert "error" not in bench, (name, bench.get("log_tail"))
        assert bench["bars"], name
        assert all(bar["value"] is not None for bar in bench["bars"]), name
        assert all(bar["status"] in ("MET", "NOT MET", "UNDECIDED") for bar in bench["bars"])
        assert all(bar["interval"] or bar["status"] == "UNDECIDED"
                   for bar in bench["bars"] if bar["timing"]), name
        assert bench["git_commit"] and bench["run_id"] == data["run_id"], name
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Bars" in text and data["machine"]["cpu"] in text
    for bench in data["benchmarks"].values():
        for bar in bench["bars"]:
            assert bar["description"] in text
    if "llamaindex" in only:
        assert sorted(p.name for p in (tmp_path / "plots").glob("*.png"))


def test_bars_are_marked_honestly():
    met = Bar("x", "lower is better", 1.1, "<=", 1.2)
    missed = Bar("y", "higher is better", 1.2, ">=", 1.5, why="slow", to_meet="do less")
    unmeasured = Bar("z", "not run", None, ">=", 1.0)
    assert (met.met, missed.met, unmeasured.met) == (True, False, None)
    data = {"benchmarks": {"b": {"bars": [met.to_dict(), missed.to_dict(), unmeasured.to_dict()]},
                           "c": {"error": "exit 1", "log_tail": []}}}
    lines = report.summary(data).splitlines()
    assert [line.split()[0] for line in lines] == ["MET", "NOT", "NOT", "FAILED"]
