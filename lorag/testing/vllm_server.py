"""A stock vLLM OpenAI server as a child process, for tests and benchmarks of the
``remote`` engine: the command a GPU server runs (README, "lorag in front of a fleet"),
sized for the CPU build and the tiny model.

    server = VLLMServer(model).start()     # returns once /health answers 200
    server.kill()                          # SIGKILL, as a crashed machine
    server.start()                         # again, on the same port

Start servers from the thread that will outlive them (the child gets SIGTERM when the
thread that started it ends: PR_SET_PDEATHSIG). The server runs in its own process group (vLLM starts an engine-core child), so
``kill()`` and ``stop()`` end both, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lorag.testing.server import answers_ok, die_with_parent, free_port


class VLLMServer:
    def __init__(self, model: Path | str, log: Path, *, lora: bool = True,
                 runtime_lora: bool = True, max_model_len: int = 512,
                 kv_cache_bytes: int = 128 * 2**20, max_loras: int = 2,
                 max_cpu_loras: int = 4, max_num_seqs: int = 16, ready_timeout: float = 900.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        self.ready_timeout = ready_timeout
        self.runtime_lora = runtime_lora
        self.command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
            "--max-model-len", str(max_model_len), "--kv-cache-memory-bytes", str(kv_cache_bytes),
            "--max-num-seqs", str(max_num_seqs), "--enforce-eager", "--seed", "0", "--disable-log-stats",
            "--uvicorn-log-level", "warning",
            # compact guided JSON, as lorag's in-process engine writes it
            "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
        if lora:
            self.command += ["--enable-lora", "--max-lora-rank", "16", "--max-loras",
                             str(max_loras), "--max-cpu-loras", str(max_cpu_loras)]
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "VLLMServer":
        env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True" if self.runtime_lora else "False"
        repo = str(Path(__file__).resolve().parents[2])  # vLLM loads lorag's CPU LoRA ops plugin
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.command, env=env, stdout=sink,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=die_with_parent)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        if not answers_ok(self.process, self.url + "/health", self.ready_timeout, "vLLM server",
                          self.tail, interval=0.3):
            self.kill()
            raise TimeoutError(f"vLLM server not ready in {self.ready_timeout} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server and its engine core (its process group)."""
        self._signal(signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> None:
        self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: int, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)  # its own group: start_new_session above
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
