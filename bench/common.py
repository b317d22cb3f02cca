"""What every benchmark shares: its result record, bars, timing helpers, the CLI.

The contract between ``bench.run`` and a benchmark module ``bench/bench_<name>.py``:

- ``python -m bench.bench_<name> [--quick] [--tiny] --out FILE.json`` runs it in its own
  process (so one benchmark's memory and threads never bleed into the next) and writes
  one JSON object, a ``BenchResult`` (``to_dict``): ``name``, ``metrics`` (flat numbers),
  ``bars`` (each a claim of the issue with its threshold, measured value and MET / NOT
  MET), ``tables`` (rows for RESULTS.md), ``notes`` and ``figures`` (data that
  ``bench.plot`` draws as PNGs).
- ``--quick`` is a smaller run (minutes in all); ``--tiny`` is the smallest run that
  still drives every code path (the test suite uses it).

``main(run)`` below implements that command line for a ``run(opts) -> BenchResult``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from bench.stats import FEWEST_ROUNDS, Interval

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

# No hub and quiet tokenizers for every benchmark; vLLM runs as lorag serves it (its
# engine core in its own process, EngineSettings.engine_process).
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                      ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)

RUN_ID = "LORAG_BENCH_RUN_ID"  # set by bench.run for the benchmarks it starts
OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t}
MET, NOT_MET, UNDECIDED, NOT_MEASURED = "MET", "NOT MET", "UNDECIDED", "NOT MEASURED"


@dataclass
class Bar:
    """One bar of the issue: ``value op threshold`` (e.g. ``speedup >= 1.5``).

    ``why`` says what the number means or why it misses; ``to_meet`` what would meet it
    (both are printed next to NOT MET in RESULTS.md).

    A timing bar (``timing``) compares two sides measured alternately; it carries the
    95% ``interval`` of its ratio over ``samples`` rounds or requests (``per``), and is
    MET only when the whole interval is inside the bar, NOT MET when it is wholly
    outside, UNDECIDED otherwise (and without an interval), with ``needed`` the samples
    that would decide it at the spread seen (bench/stats.py).
    """

    id: str
    description: str
    value: float | None
    op: str
    threshold: float
    unit: str = "x"
    why: str = ""
    to_meet: str = ""
    timing: bool = False
    interval: list[float] | None = None
    samples: int | None = None
    per: str = ""
    needed: int | None = None

    @property
    def status(self) -> str:
        if self.value is None:
            return NOT_MEASURED
        if not self.timing:
            return MET if OPS[self.op](self.value, self.threshold) else NOT_MET
        if self.interval is None:
            return UNDECIDED
        inside = [OPS[self.op](end, self.threshold) for end in self.interval]
        return MET if all(inside) else NOT_MET if not any(inside) else UNDECIDED

    @property
    def met(self) -> bool | None:
        """True when MET, False when NOT MET, None when not measured or undecided."""
        return {MET: True, NOT_MET: False}.get(self.status)

    def to_dict(self) -> dict:
        return {**asdict(self), "met": self.met, "status": self.status}


@dataclass
class BenchResult:
    name: str
    mode: str = "full"
    metrics: dict = field(default_factory=dict)
    bars: list[Bar] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)   # {"title", "columns", "rows"}
    notes: list[str] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)  # see figure(); drawn by bench.plot
    seconds: float = 0.0

    def bar(self, *args, **kwargs) -> Bar:
        found = Bar(*args, **kwargs)
        self.bars.append(found)
        return found

    def ratio_bar(self, id: str, description: str, interval: Interval, op: str,
                  threshold: float, unit: str = "x", why: str = "", to_meet: str = "") -> Bar:
        """A timing bar from a ratio and its interval (bench/stats.py); when the interval
        does not decide it, ``to_meet`` says how many rounds or requests would."""
        found = self.bar(id, description, round(interval.value, 3), op, threshold, unit=unit,
                         why=why, timing=True, samples=interval.samples, per=interval.per,
                         needed=interval.needed(threshold),
                         interval=None if interval.low is None else
                         [round(interval.low, 3), round(interval.high, 3)])
        if found.status == UNDECIDED:
            found.to_meet = "; ".join(x for x in (_deciding(found), to_meet) if x)
        elif found.status == NOT_MET:
            found.to_meet = to_meet
        return found

    def table(self, title: str, columns: list[str], rows: list[list]) -> None:
        self.tables.append({"title": title, "columns": columns, "rows": rows})

    def figure(self, file: str, title: str, xlabel: str, ylabel: str, series: list[dict],
               kind: str = "line", x: list | None = None, logx: bool = False,
               logy: bool = False) -> None:
        """A PNG for RESULTS.md: ``series`` are {"label", "x", "y", "annotate"?} (``kind``
        line), or {"label", "y"} over the category labels ``x`` (``kind`` bar)."""
        self.figures.append({"file": file, "title": title, "xlabel": xlabel, "ylabel": ylabel,
                             "series": series, "kind": kind, "x": x, "logx": logx,
                             "logy": logy})

    def to_dict(self) -> dict:
        data = asdict(self)
        data["bars"] = [b.to_dict() for b in self.bars]
        return data


@dataclass(frozen=True)
class Options:
    quick: bool
    tiny: bool
    out: Path

    @property
    def mode(self) -> str:
        return "tiny" if self.tiny else "quick" if self.quick else "full"

    def pick(self, full, quick, tiny):
        """The size for this mode."""
        return tiny if self.tiny else quick if self.quick else full


def main(run: Callable[[Options], BenchResult], argv: list[str] | None = None) -> int:
    """The benchmark command line: run it and write its JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    opts = Options(args.quick or args.tiny, args.tiny, args.out)
    started, commit = time.perf_counter(), git_commit()
    result = run(opts)
    result.mode, result.seconds = opts.mode, round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # the commit and run that measured it travel with the result, so that a result
    # collected or kept later is never credited to another commit
    measured = {"git_commit": commit, "run_id": os.environ.get(RUN_ID, "standalone")}
    args.out.write_text(json.dumps({**result.to_dict(), **measured}, indent=2, default=_jsonable))
    return 0


def git_commit() -> str:
    """HEAD's short hash, with "+uncommitted changes" when tracked files differ from it."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR,
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=REPO_DIR, capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + ("+uncommitted changes" if dirty else "")


def _deciding(bar: Bar) -> str:
    if bar.interval is None:
        return (f"{bar.samples} {bar.per} give no interval: at least {FEWEST_ROUNDS} "
                f"{bar.per} would state one")
    if bar.needed is None:
        return "the ratio sits on the bar: no number of rounds decides it"
    return f"about {bar.needed} {bar.per} (now {bar.samples}) would decide it at this spread"


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# --- measuring ---------------------------------------------------------------------------

def percentile(samples: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    values = sorted(samples)
    if not values:
        return float("nan")
    pos = (len(values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def latency_summary(seconds: list[float]) -> dict:
    """p50 / p99 / mean in milliseconds."""
    return {"p50_ms": round(percentile(seconds, 50) * 1e3, 3),
            "p99_ms": round(percentile(seconds, 99) * 1e3, 3),
            "mean_ms": round(statistics.fmean(seconds) * 1e3, 3) if seconds else float("nan"),
            "n": len(seconds)}


def progress(bench: str, text: str) -> None:
    """A progress line on stderr (the suite's log of that benchmark)."""
    print(f"[{bench} {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- describing the machine --------------------------------------------------------------

def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
                         if f" {f} " in text or f" {f}\n" in text)
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(),
            "memory_gib": round(mem, 1), "os": platform.platform(),
            "python": sys.version.split()[0], "gpu": _gpu()}


def _gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    return "none"


def versions(packages: Iterable[str]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found
