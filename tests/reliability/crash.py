"""The crash loop: run an operation in a ``lorag`` process (the CLI, or ``lorag serve``
driven over HTTP), SIGKILL the process at a random moment, then open the data directory
as a restarted process and check it (``harness.check_data_dir``) against a ledger of
what was acknowledged before the kill.

The ledger keeps, per document, the set of states a restarted process may show: the
last acknowledged one, plus the target state of every later operation that was not
acknowledged (it may or may not have committed). A restart must show one of them;
what it shows then becomes the only allowed state. Adapters: every acknowledged
version must be there with the very weights that were registered.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from lorag.app.container import Lorag
from lorag.testing.server import free_port
from tests.reliability.harness import (Observed, check_data_dir, child_env, lorag_command,
                                       settings, sha256_file)

TENANT = "acme"
DOC_POOL = 800
ABSENT = None


@dataclass
class Run:
    number: int
    op: str
    killed_mid_operation: bool  # SIGKILL after the work started, before it was acknowledged
    kill_after_seconds: float
    acknowledged: int  # acknowledged operations (documents, deletions, versions) of this run
    seconds: float = 0.0


@dataclass
class Acks:
    """What one run's process acknowledged, filled in while it runs."""

    documents: dict[str, int | None] = field(default_factory=dict)  # id -> version or ABSENT
    adapters: dict[tuple[str, int], str] = field(default_factory=dict)  # -> weights sha256
    finished: bool = False
    seconds: float | None = None  # from the start of the work to its acknowledgement
    started: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0
    # Set when the operation is seen partly done (some of it committed, not acknowledged).
    progressed: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.started.set()

    @property
    def unfinished(self) -> bool:
        """The work had started and was not acknowledged."""
        return self.started_at > 0 and not self.finished

    @property
    def count(self) -> int:
        return len(self.documents) + len(self.adapters)


def doc(doc_id: str, version: int, rng: random.Random) -> dict:
    marker = f"marker{doc_id}x"
    words = " ".join(f"w{rng.randrange(300)}" for _ in range(rng.randrange(20, 200)))
    return {"id": doc_id, "text": f"{marker} version {version}. {words}",
            "metadata": {"v": version, "marker": marker}}


class ServerProcess:
    """``lorag serve`` on a free port of 127.0.0.1, used until it is killed. Routes
    answer once /health does (the engine warms up in the background)."""

    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / "serve.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                lorag_command("serve", "--host", "127.0.0.1", "--port", str(self.port)),
                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("lorag serve did not answer /health")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(60)


class CrashLoop:
    """Runs and checks crash runs on one data directory.

    ``loras`` are adapter folders to register; ``sft_file`` a chat JSONL for training.
    """

    def __init__(self, root: Path, model: Path, loras: list[Path], sft_file: Path, seed: int):
        self.root, self.model, self.loras, self.sft_file = root, model, loras, sft_file
        self.data_dir = root / "data"
        self.rng = random.Random(seed)
        self.admin_key = "admin-" + "k" * 40
        self.env = child_env(self.data_dir, model, LORAG_SERVER__ADMIN_KEY=self.admin_key,
                             LORAG_ENGINE__BACKEND="peft", LORAG_INGEST__COMMIT_CHUNKS="8",
                             LORAG_LOG_LEVEL="WARNING")
        app = Lorag(settings(self.data_dir, model))
        app.tenants.create(TENANT)
        app.tenants.create("bystander")
        self.key = app.tenants.issue_key(TENANT).secret
        app.documents.ingest("bystander", [doc(f"b{i}", 0, self.rng) for i in range(5)])
        app.close()
        self.allowed: dict[str, set] = {f"d{i:03d}": {ABSENT} for i in range(DOC_POOL)}
        self.adapters: dict[tuple[str, int], str] = {}  # acknowledged versions -> sha256
        self.bystander: Observed | None = None
        self.runs: list[Run] = []
        self.failures: list[str] = []
        self.leftovers = {"orphan_adapter_folders": 0, "leftover_temp": 0}
        self._temp_seen: set[str] = set()  # leftover temporary files at the last check
        self.ops: dict[str, Callable[[int, Acks], None]] = {
            "ingest/server": self._ingest_server, "ingest/cli": self._ingest_cli,
            "delete/server": self._delete_server, "delete/cli": self._delete_cli,
            "register/server": self._register_server, "register/cli": self._register_cli,
            "train/cli": self._train_cli}
        self._cli: subprocess.Popen | None = None
        self._server: ServerProcess | None = None
        self._killing = threading.Event()
        self._targets: dict[str, int | None] = {}
        # Seconds from sending an operation to its acknowledgement, as last measured; a
        # kill lands at a uniformly random fraction of it.
        self.estimates = {"ingest/server": 3.0, "ingest/cli": 2.0, "delete/cli": 1.0,
                          "delete/server": 1.5, "register/server": 1.0, "register/cli": 1.0,
                          "train/cli": 10.0}
        self.measured: set[str] = set()

    def random_run(self, op: str) -> Run:
        """``op`` killed at a uniformly random fraction of its last measured duration;
        the first run of each operation is let finish (it measures it, and leaves
        something acknowledged to lose), then killed."""
        if op not in self.measured:
            self.measured.add(op)
            return self.run(op, kill_after=600)
        return self.run(op, kill_after=self.rng.uniform(0.02, 0.7) * self.estimates[op])

    def progress_run(self, op: str) -> Run:
        """``op`` killed as soon as it is seen partly done (ingest/server: its job running
        with documents committed), so the kill lands mid-operation however fast the
        machine is; an operation that reports no progress is killed once it ends."""
        return self.run(op, kill_after=600, at_progress=True)

    # -- one run -------------------------------------------------------------------------

    def run(self, op: str, kill_after: float, at_progress: bool = False) -> Run:
        """Run ``op``; SIGKILL its process ``kill_after`` seconds after the operation was
        sent (or, ``at_progress``, once it is seen partly done); check the data directory."""
        number = len(self.runs) + 1
        acks, trigger = Acks(), threading.Event()
        if at_progress:
            acks.progressed = trigger
        self._killing.clear()
        self._targets = {}
        started = time.monotonic()
        if op.endswith("/server"):
            self._server = ServerProcess(self.data_dir, self.env)
        worker = threading.Thread(target=self._guarded, args=(op, number, acks, trigger), daemon=True)
        worker.start()
        acks.started.wait(180)  # the CLI's imports are not the operation
        trigger.wait(kill_after)
        killed_at = time.monotonic() - acks.started_at
        self._killing.set()
        self._kill()
        worker.join(120)
        assert not worker.is_alive(), f"{op} worker hung"
        # read once the worker is done: an acknowledgement that arrived before the kill
        # counts even if the worker had not recorded it yet
        record = Run(number, op, acks.unfinished, round(killed_at, 3), acks.count,
                     round(time.monotonic() - started, 2))
        if acks.seconds is not None:
            self.estimates[op] = acks.seconds
        self.runs.append(record)
        self._apply(op, number, acks)
        self.check()
        return record

    def _guarded(self, op: str, number: int, acks: Acks, trigger: threading.Event) -> None:
        try:
            self.ops[op](number, acks)
            if acks.finished:
                acks.seconds = time.monotonic() - acks.started_at
        except Exception as exc:  # noqa: BLE001 - a failure unless the process was killed
            if not self._killing.is_set():
                self.failures.append(f"run {number} {op}: {type(exc).__name__}: {exc}")
        finally:
            acks.started.set()
            trigger.set()

    def _kill(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server = None
        if self._cli is not None:
            if self._cli.poll() is None:
                os.kill(self._cli.pid, signal.SIGKILL)
            self._cli.wait(60)
            self._cli = None

    # -- the ledger ----------------------------------------------------------------------

    def _apply(self, op: str, number: int, acks: Acks) -> None:
        for doc_id, state in self._targets.items():
            if doc_id in acks.documents:
                self.allowed[doc_id] = {acks.documents[doc_id]}
            else:  # sent, not acknowledged: it may or may not have happened
                self.allowed[doc_id].add(state)
        self.adapters.update(acks.adapters)

    def check(self) -> Observed:
        observed = check_data_dir(self.data_dir, self.model)
        for name in self.leftovers:
            self.leftovers[name] = max(self.leftovers[name], len(getattr(observed, name)))
        self._check_leftovers(observed)
        documents = observed.documents.get(TENANT, {})
        for doc_id, allowed in self.allowed.items():
            state = documents.get(doc_id, ABSENT)
            if state not in allowed:
                self.failures.append(f"after run {len(self.runs)}: {doc_id} is {state}, "
                                     f"allowed {sorted(allowed, key=str)}")
            self.allowed[doc_id] = {state}
        unknown = set(documents) - set(self.allowed)
        assert not unknown, f"documents nobody sent: {unknown}"
        adapters = observed.adapters.get(TENANT, {})
        for key, sha in self.adapters.items():
            if adapters.get(key) != sha:
                self.failures.append(f"after run {len(self.runs)}: acknowledged adapter {key} "
                                     f"is {'changed' if key in adapters else 'missing'}")
        bystander = (observed.documents.get("bystander"), observed.adapters.get("bystander"))
        if self.bystander is None:
            self.bystander = bystander
        elif bystander != self.bystander:
            self.failures.append(f"after run {len(self.runs)}: the bystander tenant changed")
        return observed

    def _check_leftovers(self, observed: Observed) -> None:
        """Orphan version folders only where the next registration of their name replaces
        them; new temporary files only after a kill mid-operation; and no upload outlives
        the start of the next server (which removes them)."""
        after = f"after run {len(self.runs)}"
        if observed.stale_orphan_adapter_folders:
            self.failures.append(f"{after}: orphan adapter folders no registration replaces: "
                                 f"{observed.stale_orphan_adapter_folders}")
        run = self.runs[-1] if self.runs else None
        temp = set(observed.leftover_temp)
        new = temp - self._temp_seen
        if new and not (run and run.killed_mid_operation):
            self.failures.append(f"{after}: temporary files left by a finished operation: "
                                 f"{sorted(new)}")
        uploads = f"{self.data_dir / 'uploads'}{os.sep}"
        kept = {p for p in temp & self._temp_seen if p.startswith(uploads)}
        if kept and run and run.op.endswith("/server"):
            self.failures.append(f"{after}: uploads a killed server left survived a restart: "
                                 f"{sorted(kept)}")
        self._temp_seen = temp

    # -- operations ------------------------------------------------------------------------

    def _batch(self, number: int, size: int) -> list[dict]:
        ids = self.rng.sample(sorted(self.allowed), size)
        self._targets = {i: number for i in ids}
        return [doc(i, number, self.rng) for i in ids]

    def _deletions(self, size: int) -> list[str]:
        present = sorted(i for i, s in self.allowed.items() if s != {ABSENT})
        ids = self.rng.sample(present, min(size, len(present)))
        self._targets = {i: ABSENT for i in ids}
        return ids

    def _client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self._server.url, timeout=60,
                            headers={"Authorization": f"Bearer {key}"})

    def _ingest_server(self, number: int, acks: Acks) -> None:
        documents = self._batch(number, self.rng.randrange(200, 500))
        with self._client(self.key) as client:
            acks.start()
            job = client.post("/v1/documents", json={"documents": documents})
            assert job.status_code == 202, job.text
            while True:
                state = client.get(f"/v1/jobs/{job.json()['id']}").json()
                if state["status"] == "succeeded":
                    assert state["failed"] == 0, state
                    acks.documents.update({d["id"]: number for d in documents})
                    acks.finished = True
                    break
                assert state["status"] != "failed", state
                if state["status"] == "running" and state["completed"] > 0:
                    acks.progressed.set()
                time.sleep(0.02)

    def _ingest_cli(self, number: int, acks: Acks) -> None:
        documents = self._batch(number, self.rng.randrange(200, 500))
        path = self.root / f"batch{number}.jsonl"
        path.write_text("".join(json.dumps(d) + "\n" for d in documents))
        out = self._run_cli(acks, "ingest start", "ingest", "--tenant", TENANT, "--no-progress",
                            str(path))
        if out is not None:
            report = json.loads(out)
            assert report["failed"] == 0, report
            acks.documents.update({d["id"]: number for d in documents})
            acks.finished = True

    def _delete_server(self, number: int, acks: Acks) -> None:
        ids = self._deletions(self.rng.randrange(10, 60))
        with self._client(self.key) as client:
            acks.start()
            for doc_id in ids:
                response = client.delete(f"/v1/documents/{doc_id}")
                assert response.status_code in (200, 404), response.text
                acks.documents[doc_id] = ABSENT
        acks.finished = True

    def _delete_cli(self, number: int, acks: Acks) -> None:
        ids = self._deletions(self.rng.randrange(5, 30))
        if not ids or self._run_cli(acks, "deleted document", "documents", "delete", "--tenant",
                                    TENANT, *ids) is not None:
            acks.documents.update({i: ABSENT for i in ids})
            acks.finished = True

    def _register_server(self, number: int, acks: Acks) -> None:
        self._targets = {}
        lora = self.rng.choice(self.loras)
        name = self.rng.choice(["voice", "tone"])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted(lora.iterdir()):
                archive.write(path, path.name)
        with httpx.Client(base_url=self._server.url, timeout=60,
                          headers={"Authorization": f"Bearer {self.admin_key}"}) as admin:
            acks.start()
            response = admin.post(f"/admin/tenants/{TENANT}/adapters", data={"name": name},
                                  files={"file": ("adapter.zip", buffer.getvalue())})
        assert response.status_code == 201, response.text
        version = response.json()
        acks.adapters[name, version["version"]] = sha256_file(lora / "adapter_model.safetensors")
        acks.finished = True

    def _register_cli(self, number: int, acks: Acks) -> None:
        self._targets = {}
        lora = self.rng.choice(self.loras)
        name = self.rng.choice(["voice", "tone"])
        out = self._run_cli(acks, None, "adapters", "register", "--tenant", TENANT, name, str(lora))
        if out is not None:
            version = json.loads(out)["version"]
            acks.adapters[name, version] = sha256_file(lora / "adapter_model.safetensors")
            acks.finished = True

    def _train_cli(self, number: int, acks: Acks) -> None:
        self._targets = {}
        out = self._run_cli(acks, "training tenant=", "adapters", "train", "--tenant", TENANT, "--name", "tuned",
                            "--sft", str(self.sft_file), "--steps", "3", "--batch-size", "2",
                            "--rank", "4", "--holdout", "0.25", "--checkpoint-every", "1",
                            "--max-length", "64", "--no-progress")
        if out is not None:
            summary = json.loads(out)
            version = summary["version"]
            path = self.data_dir / "adapters" / TENANT / "tuned" / str(version)
            acks.adapters["tuned", version] = sha256_file(path / "adapter_model.safetensors")
            acks.finished = True

    def _run_cli(self, acks: Acks, marker: str | None, *args: str) -> str | None:
        """Run ``lorag ARGS``; its stdout when it exits 0, None when it was killed. The
        work starts when a log line holds ``marker`` (at once when None)."""
        cli = self._cli = subprocess.Popen(lorag_command("--log-level", "INFO", *args),
                                           env=self.env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
        if marker is None:
            acks.start()
        err = []
        for line in cli.stderr:
            err.append(line)
            if marker is not None and marker in line and not acks.started.is_set():
                acks.start()
        out = cli.stdout.read()
        cli.wait()
        if cli.returncode == -signal.SIGKILL:
            return None
        assert cli.returncode == 0, f"lorag {' '.join(args)}: {''.join(err)[-2000:]}"
        return out

    # -- report ------------------------------------------------------------------------------

    def figures(self) -> dict:
        by_op: dict[str, dict] = {}
        for run in self.runs:
            entry = by_op.setdefault(run.op, {"runs": 0, "killed_mid_operation": 0,
                                              "acknowledged": 0})
            entry["runs"] += 1
            entry["killed_mid_operation"] += run.killed_mid_operation
            entry["acknowledged"] += run.acknowledged
        return {"runs": len(self.runs), "sigkills": len(self.runs),
                "killed_mid_operation": sum(r.killed_mid_operation for r in self.runs),
                "failures": len(self.failures), "by_operation": by_op,
                "most_leftovers_seen": self.leftovers,
                "runs_detail": [asdict(r) for r in self.runs]}


def write_sft_file(path: Path, count: int = 8) -> Path:
    lines = [{"messages": [{"role": "user", "content": f"What is item {i}?"},
                           {"role": "assistant", "content": f"Item {i} is a blue model."}]}
             for i in range(count)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def fresh(root: Path) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root
