"""Where vLLM's engine core process runs on a CPU machine (``engine.engine_core_cpus``).

vLLM's multiprocess executor hands each step between the engine core (which schedules)
and its worker (which runs the model) through a shared-memory queue, and a reader of
that queue busy-waits (``sched_yield``) for a second after its last read. While
generating, steps are milliseconds apart, so each of the two spins while the other
works: two cores held for one core's work. vLLM's CPU worker binds its compute threads
to cores (``VLLM_CPU_OMP_THREADS_BIND``); the engine core is left to the OS, and on a
small machine it takes the core lorag's own process needs for HTTP, retrieval and
question embeddings. On the worker's cores the two take turns instead: the one that
spins yields to the one with work.
"""

from __future__ import annotations

import logging
import os

from adapters.settings import EngineCoreCpus

log = logging.getLogger(__name__)

MIN_FREE_CPUS = 2  # auto: cores outside the worker's that leave the engine core its own


def place_engine_core(policy: EngineCoreCpus, parent: int | None = None) -> list[int] | None:
    """Apply ``policy`` to the vLLM engine core that ``parent`` (this process) started.
    Returns the cores it was put on, or None where it stays with the OS (``any``, a
    machine with cores to spare, or no engine core process with a worker of its own).
    Raises OSError or psutil.Error when one of the processes went away meanwhile."""
    import psutil

    if EngineCoreCpus(policy) is EngineCoreCpus.ANY:
        return None
    descendants = psutil.Process(parent).children(recursive=True)
    cores = [p for p in descendants if "EngineCore" in p.name()]
    workers = [p for p in descendants if "Worker" in p.name()]
    if len(cores) != 1 or not workers:
        return None
    worker_cpus = sorted(set().union(*(_thread_cpus(w.pid) for w in workers)))
    free = set(os.sched_getaffinity(cores[0].pid)) - set(worker_cpus)
    if policy is EngineCoreCpus.AUTO and len(free) >= MIN_FREE_CPUS:
        return None
    for thread in os.listdir(f"/proc/{cores[0].pid}/task"):
        os.sched_setaffinity(int(thread), worker_cpus)
    log.info("vLLM engine core pid=%d placed on the worker's cores %s (engine.engine_core_cpus=%s)",
             cores[0].pid, worker_cpus, EngineCoreCpus(policy).value)
    return worker_cpus


def _thread_cpus(pid: int) -> set[int]:
    """The cores any thread of ``pid`` may run on (vLLM binds each compute thread)."""
    cpus: set[int] = set()
    for thread in os.listdir(f"/proc/{pid}/task"):
        cpus |= os.sched_getaffinity(int(thread))
    return cpus
