"""No noisy neighbours (long part only, ``make reliability``): a quiet tenant's chat
latency alone, then beside a noisy tenant sending 10x as many concurrent chats while
it ingests a large batch of documents; once with fairness on (per-tenant limits, fair
admission, ingestion embedding in small slices on low-priority workers and paused while
chats are in flight) and once off (first come, first served, no limits, ingestion at
the serving threads' priority: lorag's scheduling before issue 13), each on its own
fresh ``lorag serve``. Each quiet answer's ``Server-Timing`` segments are recorded, so a
tail shows where its time went.

Checked: the noisy tenant gets 429s with ``Retry-After`` when fairness is on, and no
request of either tenant fails in any other way (every answer is a 200 or a 429 with
Retry-After; the quiet tenant, under no limit, gets only 200s). The quiet tenant's p50
and p99 with the neighbour over alone are written to build/reliability/noisy.json
(recorded in tests/RELIABILITY.md). Bounded: a fixed number of quiet requests per phase,
each phase under a time limit; the noisy clients stop when the quiet ones are done.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx
import pytest

from bench.common import Bar
from bench.stats import bootstrap_interval, percentile_statistic
from lorag.testing.server import LoragProcess
from tests.reliability.harness import write_figures
from tests.reliability.test_load import percentile

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET_WORKERS, NOISY_WORKERS = 2, 20  # 10x as many concurrent chats
QUIET_REQUESTS = 1000  # per phase: the p99 is the 10th slowest (at 200, the 2nd or 3rd)
WARM_UP_REQUESTS = 20
QUIET_PAUSE_S = 0.2  # steady traffic: a pause between a worker's requests
INGEST_DOCUMENTS = 3000
PHASE_LIMIT_S = 600
QUESTIONS = ["When does the store open?", "What does the blue model cost?",
             "How do I reset the device?", "How long is the warranty?"]
FAIR = {"LORAG_LIMITS__SCHEDULING": "fair", "LORAG_LIMITS__GENERATION_SLOTS": "6",
        "LORAG_LIMITS__EMBEDDING_SLICE": "16"}
UNFAIR = {"LORAG_LIMITS__SCHEDULING": "fifo", "LORAG_LIMITS__EMBEDDING_SLICE": "512",
          "LORAG_LIMITS__EMBEDDING_SHARE_WHILE_CHATTING": "1", "LORAG_LIMITS__EMBEDDING_NICE": "0"}
NOISY_LIMITS = {"max_concurrent_generations": 1, "requests_per_minute": 1200}


class Outcomes:
    def __init__(self):
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []
        self.spans: list[dict[str, float]] = []  # the server's Server-Timing of each 200 (s)

    def add(self, status: int, seconds: float, response: httpx.Response | None = None,
            error: str | None = None) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if error:
            self.failures.append(error)
        elif status == 429 and "retry-after" not in response.headers:
            self.failures.append("429 without Retry-After")
        elif status == 200:
            self.latencies.append(seconds)
            spans = server_timing(response.headers.get("server-timing", ""))
            spans["outside"] = max(0.0, seconds - spans.get("total", 0.0))
            self.spans.append(spans)


def server_timing(header: str) -> dict[str, float]:
    """``prepare;dur=1.5, queue;dur=0.0`` -> {"prepare": 0.0015, "queue": 0.0} (seconds)."""
    spans = {}
    for part in filter(None, (p.strip() for p in header.split(","))):
        name, _, duration = part.partition(";dur=")
        spans[name] = float(duration) / 1000
    return spans


async def ask(client: httpx.AsyncClient, key: str, max_tokens: int, n: int,
              outcomes: Outcomes) -> float:
    """One chat; returns the seconds to wait before the next (Retry-After on a 429)."""
    body = {"model": "support", "max_tokens": max_tokens, "temperature": 0.7, "seed": n,
            "messages": [{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}]}
    started = time.perf_counter()
    try:
        response = await client.post("/v1/chat/completions", json=body,
                                     headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        outcomes.add(0, 0, error=f"{type(exc).__name__}: {exc}")
        return 1.0
    seconds = time.perf_counter() - started
    if response.status_code not in (200, 429):
        outcomes.add(response.status_code, seconds, error=response.text[:300])
        return 0.0
    outcomes.add(response.status_code, seconds, response)
    if response.status_code == 429:
        return min(float(response.headers.get("retry-after", 1)), 2.0)
    return 0.0


async def quiet_traffic(url: str, key: str, requests: int = QUIET_REQUESTS) -> Outcomes:
    outcomes, counter = Outcomes(), iter(range(requests))
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def worker() -> None:
            for n in counter:
                await ask(client, key, 16, n, outcomes)
                await asyncio.sleep(QUIET_PAUSE_S)
        await asyncio.gather(*[worker() for _ in range(QUIET_WORKERS)])
    return outcomes


async def noisy_traffic(url: str, key: str, stop: asyncio.Event) -> Outcomes:
    outcomes = Outcomes()
    limits = httpx.Limits(max_connections=NOISY_WORKERS + 5)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker(w: int) -> None:
            n = w
            while not stop.is_set():
                wait = await ask(client, key, 64, n, outcomes)
                n += NOISY_WORKERS
                if wait:
                    await asyncio.sleep(wait)
        await asyncio.gather(*[worker(w) for w in range(NOISY_WORKERS)])
    return outcomes


async def with_neighbour(url: str, keys: dict[str, str]) -> tuple[Outcomes, Outcomes, dict]:
    stop = asyncio.Event()
    noisy = asyncio.create_task(noisy_traffic(url, keys["noisy"], stop))
    documents = [{"id": f"bulk-{i}", "text": " ".join(QUESTIONS[(i + j) % 4] for j in range(12))
                  + f" Item {i}."} for i in range(INGEST_DOCUMENTS)]
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        job = await client.post("/v1/documents", json={"documents": documents},
                                headers={"Authorization": f"Bearer {keys['noisy']}"})
    await asyncio.sleep(2.0)  # the neighbour is in full swing
    quiet = await quiet_traffic(url, keys["quiet"])
    stop.set()
    noisy_outcomes = await asyncio.wait_for(noisy, 120)
    return quiet, noisy_outcomes, {"status": job.status_code, "id": job.json().get("id")}


def run_server(tmp_path, tiny_model, name: str, env: dict[str, str], fair: bool) -> dict:
    process = LoragProcess(tmp_path / name, ready_timeout=900, env={
        "LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__MAX_MODEL_LEN": "512",
        "LORAG_ENGINE__KV_CACHE_BYTES": str(256 * 2**20), "LORAG_ENVIRONMENT": "test",
        "LORAG_LOG_LEVEL": "WARNING", "PYTHONPATH": REPO, **env})
    with process as server:
        admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=120)
        keys = {}
        for tenant in ("quiet", "noisy"):
            keys[tenant] = admin.post("/admin/tenants", json={"id": tenant}).json()["key"]["api_key"]
            admin.post(f"/admin/tenants/{tenant}/brands", json={"name": "support"}).raise_for_status()
        seed = [{"id": f"faq-{i}", "text": q + " See the help center."} for i, q in enumerate(QUESTIONS)]
        job = admin.post("/v1/documents", json={"documents": seed},
                         headers={"Authorization": f"Bearer {keys['quiet']}"}).json()["id"]
        while httpx.get(f"{server.url}/v1/jobs/{job}", headers={
                "Authorization": f"Bearer {keys['quiet']}"}).json()["status"] in ("queued", "running"):
            time.sleep(0.2)
        if fair:
            admin.patch("/admin/tenants/noisy/limits", json=NOISY_LIMITS).raise_for_status()
        asyncio.run(quiet_traffic(server.url, keys["quiet"], WARM_UP_REQUESTS))  # not measured
        started = time.monotonic()
        alone = asyncio.run(asyncio.wait_for(quiet_traffic(server.url, keys["quiet"]), PHASE_LIMIT_S))
        alone_s = time.monotonic() - started
        started = time.monotonic()
        quiet, noisy, job = asyncio.run(asyncio.wait_for(with_neighbour(server.url, keys), PHASE_LIMIT_S))
        neighbour_s = time.monotonic() - started
        ingested = httpx.get(f"{server.url}/v1/jobs/{job['id']}", headers={
            "Authorization": f"Bearer {keys['noisy']}"}).json()
        admin.close()
    return {"alone": alone, "quiet": quiet, "noisy": noisy, "job": job, "ingested": ingested,
            "alone_s": alone_s, "neighbour_s": neighbour_s}


SEGMENTS = ("prepare", "queue", "first", "decode", "record", "outside")


def segments(outcomes: Outcomes) -> dict:
    """Each segment's p50 / p99 (s), and where the three slowest answers spent their time."""
    spans = [s for s in outcomes.spans if "total" in s]
    if not spans:
        return {}
    table = {name: [round(statistics.median(s.get(name, 0.0) for s in spans), 3),
                    round(percentile([s.get(name, 0.0) for s in spans], 0.99), 3)]
             for name in SEGMENTS}
    slowest = sorted(zip(outcomes.latencies, outcomes.spans), key=lambda pair: -pair[0])[:3]
    table["slowest"] = [{"latency": round(latency, 3),
                         **{name: round(s.get(name, 0.0), 3) for name in SEGMENTS}}
                        for latency, s in slowest]
    return table


def bars(run: dict, name: str) -> list[dict]:
    """The issue's bars (quiet tenant's p50 and p99 beside the neighbour <= 1.5x its own
    alone) with 95% bootstrap intervals over the requests: MET / NOT MET / UNDECIDED."""
    alone, quiet = run["alone"].latencies, run["quiet"].latencies
    found = []
    for q in (50, 99):
        interval = bootstrap_interval(quiet, alone, percentile_statistic(q))
        found.append(Bar(f"noisy_{name}_p{q}", f"quiet tenant p{q} beside the neighbour / alone "
                         f"({name})", round(interval.value, 2), "<=", 1.5, timing=True,
                         interval=None if interval.low is None else
                         [round(interval.low, 2), round(interval.high, 2)],
                         samples=interval.samples, per=interval.per,
                         needed=interval.needed(1.5)).to_dict())
    return found


def summary(run: dict, name: str) -> dict:
    alone, quiet = run["alone"].latencies, run["quiet"].latencies
    p = {"alone_p50": statistics.median(alone), "alone_p99": percentile(alone, 0.99),
         "neighbour_p50": statistics.median(quiet), "neighbour_p99": percentile(quiet, 0.99)}
    return {**{k: round(v, 3) for k, v in p.items()},
            "p50_ratio": round(p["neighbour_p50"] / p["alone_p50"], 2),
            "p99_ratio": round(p["neighbour_p99"] / p["alone_p99"], 2),
            "quiet_statuses": run["quiet"].statuses, "alone_statuses": run["alone"].statuses,
            "noisy_statuses": run["noisy"].statuses,
            "noisy_answered": len(run["noisy"].latencies),
            "alone_segments": segments(run["alone"]), "neighbour_segments": segments(run["quiet"]),
            "ingest_job": {k: run["ingested"].get(k) for k in ("status", "completed", "failed", "total")},
            "phase_seconds": {"alone": round(run["alone_s"], 1), "neighbour": round(run["neighbour_s"], 1)},
            "bars": [{k: bar[k] for k in ("id", "value", "interval", "status", "needed")}
                     for bar in bars(run, name)],
            "failures": (run["alone"].failures + run["quiet"].failures + run["noisy"].failures)[:10]}


def test_a_quiet_tenant_keeps_its_latency_beside_a_noisy_one(tmp_path, tiny_model):
    load_before = os.getloadavg()
    fair = summary(run_server(tmp_path, tiny_model, "fair", FAIR, fair=True), "fair")
    print("fair", fair, flush=True)
    unfair = summary(run_server(tmp_path, tiny_model, "fifo", UNFAIR, fair=False), "fifo")
    print("fifo", unfair, flush=True)
    figures = {"fair": fair, "fifo_no_limits": unfair, "quiet_workers": QUIET_WORKERS,
               "noisy_workers": NOISY_WORKERS, "quiet_requests_per_phase": QUIET_REQUESTS,
               "ingest_documents": INGEST_DOCUMENTS, "noisy_limits": NOISY_LIMITS,
               "load_average_before": [round(x, 1) for x in load_before],
               "load_average_after": [round(x, 1) for x in os.getloadavg()]}
    write_figures("noisy", figures)
    for run in (fair, unfair):
        assert not run["failures"], run["failures"]
        assert set(run["quiet_statuses"]) == {200} and set(run["alone_statuses"]) == {200}, run
        assert set(run["noisy_statuses"]) <= {200, 429}, run
        assert run["noisy_answered"] > 0
    assert fair["noisy_statuses"].get(429, 0) > 0  # the neighbour was held back, with Retry-After
    assert unfair["noisy_statuses"].get(429, 0) == 0  # no limits: nothing to refuse
