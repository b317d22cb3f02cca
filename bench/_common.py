"""Small helpers shared by the benchmarks: a timer and a description of the machine."""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from typing import Iterator


class Timer:
    seconds: float = 0.0      # wall clock
    cpu_seconds: float = 0.0  # this process, all threads: steadier on a shared machine


@contextmanager
def timed() -> Iterator[Timer]:
    """``with timed() as t: ...`` then ``t.seconds`` and ``t.cpu_seconds``."""
    timer = Timer()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - started
        timer.cpu_seconds = time.process_time() - cpu_started


def machine() -> str:
    """CPU model, cores, load and Python version, for the results file."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores, load {load:.1f} at start, "
            f"Python {platform.python_version()}")
