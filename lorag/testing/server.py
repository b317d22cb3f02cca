"""Test and benchmark support: ``lorag serve`` as a child process on a free port.

    with LoragProcess(data_dir, env={"LORAG_ENGINE__MODEL": str(model)}) as server:
        httpx.get(server.url + "/v1/models", headers=server.admin_headers)

The child gets its settings from the environment (``LORAG_...``), so it runs exactly
what ``make run`` runs, with real signals: ``stop()`` sends SIGTERM and waits for the
graceful shutdown.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when its parent dies, even by SIGKILL (Linux),
    so a killed test or benchmark leaves no server behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def child_environ() -> dict[str, str]:
    """This process's environment for a ``lorag`` child, less the switch in-process tests
    set to run vLLM in-process: the child runs it as its settings say
    (``engine.engine_process``)."""
    return {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



def answers_ok(process: subprocess.Popen, url: str, timeout: float, what: str,
               log: Callable[[], str], *, interval: float) -> bool:
    """Poll ``url`` until it answers 200 (True) or ``timeout`` passes (False); raises
    RuntimeError with the log's tail when ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(interval)
    return False

class LoragProcess:
    """A ``lorag serve`` child process; ``start()`` returns once /ready answers 200."""

    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), ready_timeout: float = 900.0):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = "admin-" + secrets.token_urlsafe(32)
        self.args = args
        self.ready_timeout = ready_timeout
        self.env = {**child_environ(), "LORAG_DATA_DIR": str(self.data_dir),
                    "LORAG_SERVER__ADMIN_KEY": self.admin_key, "PYTHONUNBUFFERED": "1",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        self.log_path = self.data_dir / "serve.log"
        self.process: subprocess.Popen | None = None

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def start(self, wait: bool = True) -> "LoragProcess":
        """Start the child; with ``wait``, return once /ready answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "lorag", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), *self.args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        if not answers_ok(self.process, self.url + "/ready", self.ready_timeout, "lorag serve",
                          self.log, interval=0.2):
            self.stop()
            raise TimeoutError(f"lorag serve was not ready in {self.ready_timeout} s:\n{self.log()}")

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then wait for the graceful shutdown (SIGKILL after ``timeout``)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> "LoragProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
