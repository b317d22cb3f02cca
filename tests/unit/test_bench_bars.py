"""The benchmark report cannot say MET for what it did not measure: every timing bar
states a confidence interval and is decided by it, each benchmark's bar computation
runs (on measurements shaped like its own), and results keep the commit and run that
measured them through --only, --collect and --no-baselines. No model, no engine: seconds."""

from __future__ import annotations

import json
import random

import pytest

from bench import report, run as suite
from bench.common import RUN_ID, Bar, BenchResult
from bench.stats import bootstrap_interval, percentile_statistic, rounds_interval


def _noisy(center: float, spread: float, n: int, seed: int = 0) -> tuple[list, list]:
    """n rounds of (a, b) with a/b scattered around ``center``, b drifting."""
    rng = random.Random(seed)
    b = [10 * (1 + 0.3 * rng.random()) for _ in range(n)]
    return [x * center * (1 + spread * (rng.random() - 0.5)) for x in b], b


def _bar(interval, op=">=", threshold=2.0) -> Bar:
    result = BenchResult("x")
    return result.ratio_bar("x", "a timing bar", interval, op, threshold)


# -- intervals decide the bar -----------------------------------------------------------------

def test_a_tight_interval_inside_the_bar_is_met_and_outside_not_met():
    assert _bar(rounds_interval(*_noisy(2.6, 0.05, 6))).status == "MET"
    assert _bar(rounds_interval(*_noisy(1.4, 0.05, 6))).status == "NOT MET"
    assert _bar(rounds_interval(*_noisy(0.9, 0.05, 6)), "<=", 1.1).status == "MET"


def test_an_interval_straddling_the_bar_is_undecided_with_the_rounds_that_would_decide_it():
    interval = rounds_interval(*_noisy(2.1, 0.6, 4))
    assert interval.low < 2.0 < interval.high
    bar = _bar(interval)
    assert bar.status == "UNDECIDED" and bar.met is None
    assert bar.needed > 4 and f"about {bar.needed} rounds" in bar.to_meet
    # at the rounds it names, the same spread would decide it
    more = rounds_interval(*_noisy(2.1, 0.6, 4 * bar.needed, seed=1))
    assert _bar(more).status in ("MET", "NOT MET")


def test_one_round_gives_no_interval_and_no_verdict():
    bar = _bar(rounds_interval([3.0], [1.0]))
    assert bar.value == 3.0 and bar.interval is None and bar.status == "UNDECIDED"
    assert "no interval" in bar.to_meet


def test_bootstrap_of_percentiles_paired_and_not():
    rng = random.Random(2)
    base = [0.010 + 0.002 * rng.random() for _ in range(200)]
    slower = [x * 1.5 for x in base]
    paired = bootstrap_interval(slower, base, percentile_statistic(50), paired=True)
    assert paired.value == pytest.approx(1.5) and paired.low == pytest.approx(1.5)
    loose = bootstrap_interval(slower, base, percentile_statistic(99))
    assert loose.low < loose.value < loose.high and loose.per == "requests"
    assert bootstrap_interval(slower, base) == bootstrap_interval(slower, base)  # seeded


def test_non_timing_bars_keep_plain_comparison_and_the_report_shows_intervals():
    recall = Bar("r", "recall", 0.97, ">=", 0.95)
    timing = _bar(rounds_interval(*_noisy(2.1, 0.6, 4)))
    data = {"benchmarks": {"b": {"bars": [recall.to_dict(), timing.to_dict()],
                                 "git_commit": "abc1234"}}}
    lines = report.summary(data).splitlines()
    assert lines[0].split()[0] == "MET" and lines[1].split()[0] == "UNDECIDED"
    assert "[95%: " in lines[1] and "(4 rounds)" in lines[1]


# -- every benchmark's bar computation ---------------------------------------------------------

def _ingest_runs(n: int) -> list[dict]:
    return [{"first": 1.0 + 0.01 * i, "model": 0.95, "reingest": 0.01, "raw": 0.97 + 0.01 * i,
             "chunks": 21, "raw_first": i % 2 == 1} for i in range(n)]


def test_ingest_bars(tmp_path):
    from bench import bench_ingest

    result = BenchResult("ingest")
    files = [tmp_path / "a.txt"]
    files[0].write_text("some words here")
    bench_ingest._report(result, "corpus", files, 64, _ingest_runs(4))
    bars = {b.id: b for b in result.bars}
    assert bars["reingest_speedup"].status == "MET"
    assert bars["ingest_overhead"].timing and bars["ingest_overhead"].interval


def test_llamaindex_bar_is_float32_on_both_sides_per_chunk():
    from bench import bench_llamaindex

    def side(seconds, chunks, tokens=100):
        return [{"seconds": seconds * (1 + 0.02 * i), "chunks": chunks,
                 "chunk_tokens_mean": tokens} for i in range(4)]

    runs = {"lorag float32": side(10, 642), "lorag bfloat16": side(4, 642),
            "LlamaIndex float32": side(11, 700)}
    result = BenchResult("llamaindex")
    spec = {"chunk_size": 256, "chunk_overlap": 32, "batch_size": 64, "torch_threads": 2}
    bench_llamaindex._report(result, "corpus", ["f"] * 24, spec, runs)
    (bar,) = result.bars
    # per chunk: (642/10) / (700/11) = 1.009, not 11/10 seconds nor bf16's 2.75
    assert bar.value == pytest.approx(1.009, abs=0.01) and bar.status == "NOT MET"
    assert "float32" in bar.description
    assert result.metrics["bf16_gain"] == pytest.approx(2.5, abs=0.01)
    failed = BenchResult("llamaindex")
    bench_llamaindex._report(failed, "corpus", ["f"], spec,
                             {"lorag float32": side(10, 5), "LlamaIndex float32": [None] * 4})
    assert failed.bars[0].status == "NOT MEASURED"


def test_http_adapters_pool_and_guard_bars():
    from bench import bench_adapters, bench_http, bench_pool_real, bench_quality
    from bench.bench_http import Sample

    rng = random.Random(3)

    def samples(scale, n=32):
        return [Sample(scale * (0.1 + 0.01 * rng.random()), 0.01, 20, 8) for _ in range(n)]

    found = {r: {8: {"lorag": (samples(1.02), 3.0), "raw vLLM": (samples(1.0), 3.0)}}
             for r in ("off", "on")}
    http = bench_http.result_of(found, {"model": "tiny", "max_tokens": 8, "top_k": 1},
                                {"raw": ["python", "-m", "x"]})
    assert [b.status for b in http.bars] == ["MET", "MET"]

    speeds = {name: {"wall": 100.0 / (1 + n / 20), "cpu": 50.0,
                     "rounds": [100.0 / (1 + n / 20) * (1 + 0.01 * i) for i in range(4)]}
              for name, n in bench_adapters.CONFIGS.items()}
    size = {"model": "tiny", "max_loras": 8, "lora_target_modules": ["q_proj"], "requests": 8,
            "max_tokens": 8, "rounds": 4, "cold": 2}
    adapters = bench_adapters.result_of({"cold": {"cold_ms": 9.0, "warm_ms": 3.0, "base_ms": 2.0},
                                         "speeds": speeds}, size)
    assert [b.status for b in adapters.bars] == ["MET", "MET", "NOT MET", "NOT MET"]
    assert adapters.bars[-1].id == "adapters.throughput.32"

    def side(scale):
        lat = [s.latency for s in samples(scale)]
        return {"n": 32, "p50_ms": 100 * scale, "p99_ms": 120 * scale, "ttft_p50_ms": 10,
                "tokens_per_s": 80 / scale, "rounds_p50": lat[:4],
                "rounds_tps": [80 / scale * (1 + 0.01 * i) for i in range(4)]}

    pool = BenchResult("pool")
    bench_pool_real.report({8: {"lorag": side(1.3), "direct (client spreads)": side(1.0)}},
                           {"model": "tiny", "max_tokens": 8}, "python -m vllm", pool)
    assert [b.status for b in pool.bars] == ["NOT MET", "NOT MET"]

    guard = BenchResult("quality")
    off = [0.1 + 0.01 * rng.random() for _ in range(20)]
    bench_quality.guard_bar(guard, {"off": off, "flag": [x * 1.01 for x in off]},
                            {"model": "tiny", "max_tokens": 8})
    assert guard.bars[0].status == "MET" and guard.bars[0].timing


def test_embedders_bars():
    from bench import bench_embedders

    speed = {"pytorch float32": [10.0, 11.0, 10.5, 9.8], "onnx int8": [30.0, 31.0, 29.0, 30.5],
             "pytorch bfloat16": [20.0, 21.0, 19.0, 20.0]}
    reference = [100.0, 50.0, 0.0, 100.0] * 3  # per query, 12 queries: mean 62.5
    per_query = {("pytorch", "pytorch"): reference,
                 ("pytorch", "onnx"): reference[:-1] + [94.0],  # 0.5 points lost
                 ("onnx", "onnx"): reference[:-1] + [88.0],  # 1.0
                 ("onnx", "pytorch"): reference[:-1] + [88.0]}  # 1.0
    quality = {"queries": 12, "per_query": per_query,
               "scores": {pair: round(sum(v) / len(v), 2) for pair, v in per_query.items()}}
    result = BenchResult("embedders")
    bench_embedders._report(result, ["a b c"] * 4, speed, quality, "onnx int8")
    bars = {b.id: b for b in result.bars}
    assert bars["embedders.onnx_speedup"].status == "MET"
    lost = bars["embedders.onnx_ndcg"]
    assert lost.value == 1.0 and lost.status == "NOT MET"
    cross = bars["embedders.cross_backend"]
    assert cross.value == 1.0 and "onnx index, pytorch queries" in cross.why
    low, high = result.metrics["ndcg_points_lost"]["pytorch-index/onnx-queries"][1:]
    assert low <= 0.5 <= high  # a paired interval around the mean loss


# -- results name the commit and run that measured them ---------------------------------------

def _result(name: str, commit: str, run_id: str, value: float = 1.0, error: str = "") -> dict:
    bar = Bar("b", f"{name} bar", value, "<=", 2.0).to_dict()
    found = {"name": name, "mode": "tiny", "git_commit": commit, "run_id": run_id,
             "finished_utc": "then", "bars": [] if error else [bar], "figures": []}
    return {**found, "error": error} if error else found


def _write_logs(folder, results: dict) -> None:
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    for name, found in results.items():
        (folder / "logs" / f"{name}.json").write_text(json.dumps(found))


def test_collect_keeps_the_commit_each_file_names(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAG_BENCH_NO_BASELINES", "1")
    _write_logs(tmp_path, {"ingest": _result("ingest", "old1111", "run-a"),
                           "ann": {k: v for k, v in _result("ann", "x", "y").items()
                                   if k not in ("git_commit", "run_id")}})
    suite.main(["--tiny", "--collect", "--only", "ingest", "ann", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["benchmarks"]["ingest"]["git_commit"] == "old1111"
    assert "unknown" in data["benchmarks"]["ann"]["git_commit"]
    assert data["invocations"][-1]["git_commit"].startswith("old1111")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| old1111 |" in text and "results measured at commit" in text


def test_only_never_shows_a_failed_benchmark_s_earlier_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAG_BENCH_NO_BASELINES", "1")
    monkeypatch.setenv(RUN_ID, "run-old")
    earlier = {"ingest": _result("ingest", "old1111", "run-old"),
               "ann": _result("ann", "old1111", "run-old")}
    invocation = {"command": "python -m bench.run --tiny", "mode": "tiny", "run_id": "run-old",
                  "started_utc": "then", "duration_s": 1, "baseline_setup_s": 0,
                  "load_at_start": 0.1, "git_commit": "old1111", "benchmarks": list(earlier)}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"benchmarks": earlier, "invocations": [invocation],
                                "baseline_versions": {"llama-index-core": "0.14"}}))
    now = {"ingest": _result("ingest", "new2222", "run-new", error="exit 1, no result file")}
    data = suite._merge(path, {**invocation, "run_id": "run-new", "git_commit": "new2222",
                               "benchmarks": ["ingest"]}, now, keep=True)
    ingest = data["benchmarks"]["ingest"]
    assert "error" in ingest and not ingest["bars"] and "old1111" in ingest["notes"][0]
    # ann's figures stay, with the invocation that measured them
    assert [i["run_id"] for i in data["invocations"]] == ["run-old", "run-new"]
    assert data["baseline_versions"] == {"llama-index-core": "0.14"}  # --no-baselines kept them
    (tmp_path / "BY_HAND.md").write_text("## ray: written by hand\n\nfigures kept\n")
    text = report.render(data, [], tmp_path)
    assert "| ann | ann bar | 1x | <= 2x | **MET** | old1111 |" in text
    assert "| ingest | (whole benchmark) | n/a | | **FAILED** | new2222 |" in text
    assert "## ray: written by hand\n\nfigures kept" in text  # re-rendering keeps them


def test_no_baselines_links_only_plots_drawn_from_the_results_shown(tmp_path):
    (tmp_path / "plots").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "plots" / name).write_bytes(b"png")
    figure = {"title": "t", "file": "a.png"}
    data = {"benchmarks": {"x": {"run_id": "run-2", "figures": [figure]},
                           "y": {"run_id": "run-1", "figures": [{"title": "u", "file": "b.png"}]}},
            "plots_drawn": {"a.png": "run-1", "b.png": "run-1"}}
    assert suite._current_plots(tmp_path, data) == ["b.png"]  # a.png shows x's older run
    section = "\n".join(report._section("x", {**data["benchmarks"]["x"]}, ["b.png"]))
    assert "plots/a.png" not in section and "not drawn" in section
