"""Per-tenant limits: token buckets, the fair queues and gates (a fake clock, no sleeps),
the limits service (overrides, validation, chat admission, ingestion quotas), and the
HTTP layer over fakes (429 with OpenAI's headers, admin routes, changes without restart)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lorag.app.container import Lorag
from lorag.app.limits.buckets import TokenBucket
from lorag.app.limits.fair import AsyncGate, DeficitRoundRobin, Fifo, ThreadGate
from lorag.app.limits.settings import LimitSettings, LimitValues, SchedulingPolicy
from lorag.app.settings import Settings
from lorag.core.errors import InvalidInput, NotFound, QuotaExceeded, RateLimited
from lorag.core.limits import LimitStore, utc_day
from lorag.testing.settings import fast_settings
from server.app import create_app
from server.errors import error_response
from tests.unit.chat_fakes import FakeContainer

ADMIN_KEY = "admin-" + "x" * 40


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- token buckets ----------------------------------------------------------------------------

def test_bucket_allows_a_burst_then_refills_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(60, clock)  # one a second
    assert all(bucket.take(1) == 0 for _ in range(60))
    assert bucket.take(1) == pytest.approx(1.0)  # nothing taken when refused
    assert bucket.window().remaining == 0
    assert bucket.window().reset_seconds == pytest.approx(60.0)
    clock.advance(0.5)
    assert bucket.take(1) == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take(1) == 0
    clock.advance(3600)
    assert bucket.window().remaining == 60  # never more than the limit


def test_bucket_gives_back_unused_tokens_and_resizes():
    clock = FakeClock()
    bucket = TokenBucket(1000, clock)
    assert bucket.take(800) == 0
    bucket.give_back(500)  # reserved 800, used 300
    assert bucket.window().remaining == 700
    bucket.give_back(10_000)
    assert bucket.window().remaining == 1000
    bucket.take(900)
    bucket.resize(2000)  # what is used stays used
    assert bucket.window().remaining == 1100
    bucket.resize(500)
    assert bucket.window().remaining == 0
    assert bucket.take(100) == pytest.approx(100 / (500 / 60))


# -- fair queues ---------------------------------------------------------------------------------

def drain(queue) -> list:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_deficit_round_robin_interleaves_a_burst_with_a_small_tenant():
    queue = DeficitRoundRobin(quantum=100, weight=lambda tenant: 1.0)
    for i in range(8):
        queue.push("noisy", f"n{i}", 100)
    queue.push("quiet", "q0", 100)
    queue.push("quiet", "q1", 100)
    order = drain(queue)
    assert order[:4] == ["n0", "q0", "n1", "q1"]
    assert order[4:] == [f"n{i}" for i in range(2, 8)]
    fifo = Fifo()
    for i in range(8):
        fifo.push("noisy", f"n{i}", 100)
    fifo.push("quiet", "q0", 100)
    assert drain(fifo)[-1] == "q0"  # first come, first served: the quiet tenant is last


def test_deficit_round_robin_shares_by_weight_and_by_cost():
    weights = {"gold": 2.0, "basic": 1.0}
    queue = DeficitRoundRobin(quantum=100, weight=weights.__getitem__)
    for i in range(30):
        queue.push("gold", ("gold", i), 100)
        queue.push("basic", ("basic", i), 100)
    first = drain(queue)[:30]
    assert sum(t == "gold" for t, _ in first) == 20  # twice basic's share
    # cost: a tenant of long requests is admitted less often than one of short ones
    queue = DeficitRoundRobin(quantum=100, weight=lambda tenant: 1.0)
    for i in range(20):
        queue.push("long", ("long", i), 400)
        queue.push("short", ("short", i), 100)
    first = [queue.pop() for _ in range(15)]
    assert len(queue) == 40 - 15
    assert sum(t == "short" for t, _ in first) == 12  # 4 short per long: equal tokens


def test_async_gate_admits_waiters_in_fair_order_and_skips_cancelled_ones():
    async def scenario(policy: SchedulingPolicy) -> list[str]:
        queue = DeficitRoundRobin(1, lambda t: 1.0) if policy is SchedulingPolicy.FAIR else Fifo()
        gate = AsyncGate(1, queue)
        order: list[str] = []
        await gate.acquire("noisy", 1)  # one generation running

        async def request(tenant: str, name: str) -> None:
            async with gate.slot(tenant, 1):
                order.append(name)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(request("noisy", f"n{i}")) for i in range(4)]
        await asyncio.sleep(0)
        gone = asyncio.create_task(request("quiet", "gone"))
        tasks.append(asyncio.create_task(request("quiet", "q0")))
        await asyncio.sleep(0)
        gone.cancel()  # a client that went away while waiting
        await asyncio.sleep(0)
        assert gate.waiting == 5
        gate.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert gate.busy == 0 and gate.waiting == 0
        return order

    fair = asyncio.run(scenario(SchedulingPolicy.FAIR))
    assert fair.index("q0") == 1 and "gone" not in fair
    fifo = asyncio.run(scenario(SchedulingPolicy.FIFO))
    assert fifo.index("q0") == 4 and "gone" not in fifo


def test_thread_gate_lets_a_small_job_in_between_slices_of_a_big_one():
    gate = ThreadGate(1, DeficitRoundRobin(1, lambda t: 1.0))
    order: list[str] = []
    big_holds, small_waits = threading.Event(), threading.Event()

    def big() -> None:
        for i in range(4):
            with gate.slot("big", 1):
                order.append(f"b{i}")
                if i == 0:
                    big_holds.set()
                    small_waits.wait(5)
                    while not len(gate.queue):  # the small job is queued behind us
                        threading.Event().wait(0.001)

    def small() -> None:
        big_holds.wait(5)
        small_waits.set()
        with gate.slot("small", 1):
            order.append("s0")

    threads = [threading.Thread(target=big), threading.Thread(target=small)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order[:2] == ["b0", "s0"] and len(order) == 5


# -- the limits service -------------------------------------------------------------------------

@pytest.fixture
def lorag(tmp_path):
    settings = fast_settings(tmp_path / "data")
    app = Lorag(settings)
    for tenant in ("acme", "other"):
        app.tenants.create(tenant)
    yield app
    app.close()


def clocked(lorag: Lorag, clock: FakeClock, **settings) -> Lorag:
    """The container's limits on a fake clock."""
    from lorag.app.limits import TenantLimits

    lorag.__dict__["limits"] = TenantLimits(
        LimitSettings(**settings), LimitStore(lorag.catalog), generation_slots=4,
        tenant_dir=lorag.layout.tenant_dir, clock=clock)
    return lorag


def test_requests_per_minute_is_per_tenant_and_says_when_to_retry(lorag):
    clock = FakeClock()
    limits = clocked(lorag, clock, defaults=LimitValues(requests_per_minute=2)).limits
    for _ in range(2):
        limits.admit_chat("acme").finish(0, 0, served=False)
    with pytest.raises(RateLimited) as refused:
        limits.admit_chat("acme")
    assert refused.value.retry_after == pytest.approx(30.0)
    assert refused.value.windows["requests"].remaining == 0
    limits.admit_chat("other").finish(0, 0, served=False)  # another tenant is untouched
    clock.advance(30)
    limits.admit_chat("acme").finish(0, 0, served=False)


def test_tokens_are_reserved_then_given_back_and_concurrency_is_capped(lorag):
    clock = FakeClock()
    limits = clocked(lorag, clock, defaults=LimitValues(
        tokens_per_minute=1000, max_concurrent_generations=2)).limits
    first = limits.admit_chat("acme")
    first.reserve_tokens(600)
    second = limits.admit_chat("acme")
    with pytest.raises(RateLimited):
        limits.admit_chat("acme")  # two in flight
    with pytest.raises(RateLimited) as refused:
        second.reserve_tokens(600)  # 400 left
    assert refused.value.windows["tokens"].remaining == 400
    first.finish(100, 50)  # 450 of 600 unused come back
    assert limits.usage("acme").requests == 1  # the refused one is not counted as served
    assert limits.admit_chat("acme").windows()["tokens"].remaining == 850
    with pytest.raises(InvalidInput) as too_big:
        limits.admit_chat("other").reserve_tokens(1001)
    assert too_big.value.param == "max_tokens"


def test_overrides_are_validated_and_apply_at_once_or_after_the_refresh(lorag):
    clock = FakeClock()
    limits = clocked(lorag, clock, refresh_seconds=1.0).limits
    for tenant, change, param in [("acme", {"requests_per_minute": 0}, "requests_per_minute"),
                                  ("acme", {"tokens_per_minute": -5}, "tokens_per_minute"),
                                  ("acme", {"weight": 0}, "weight"),
                                  ("acme", {"speed": 3}, "speed")]:
        with pytest.raises(InvalidInput) as bad:
            limits.set_overrides(tenant, change)
        assert bad.value.param == param
    with pytest.raises(NotFound) as unknown:
        limits.set_overrides("ghost", {"weight": 2})
    assert unknown.value.param == "tenant"
    assert limits.view("acme").overrides == {}  # nothing half applied
    limits.set_overrides("acme", {"requests_per_minute": 1})  # here: at once
    limits.admit_chat("acme")
    with pytest.raises(RateLimited):
        limits.admit_chat("acme")
    # another process (the CLI) writes the catalog: seen after refresh_seconds
    LimitStore(lorag.catalog).set_overrides("acme", {"requests_per_minute": 100})
    with pytest.raises(RateLimited):
        limits.admit_chat("acme")
    clock.advance(1.0)
    limits.admit_chat("acme")
    limits.set_overrides("acme", {"requests_per_minute": None, "weight": 3})
    assert limits.view("acme").overrides == {"weight": 3.0}


def test_usage_is_recorded_per_tenant_and_day(lorag):
    limits = lorag.limits
    ticket = limits.admit_chat("acme")
    ticket.finish(12, 30)
    ticket.finish(12, 30)  # idempotent
    limits.admit_chat("acme").finish(0, 0, served=False)
    usage = limits.usage("acme", utc_day())
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, 12, 30)
    assert limits.usage("other").requests == 0
    with pytest.raises(NotFound):
        limits.usage("ghost")


def doc(i: int, words: int = 20) -> dict:
    return {"id": f"d{i}", "text": " ".join(f"word{i}x{j}" for j in range(words))}


def test_ingestion_over_quota_fails_the_remaining_documents_and_stores_them_whole(lorag):
    lorag.limits.set_overrides("acme", {"documents_per_day": 3})
    report = lorag.documents.ingest("acme", [doc(i) for i in range(6)])
    assert report.added == 3 and report.failed == 3
    assert {f.code for f in report.failures} == {"quota_exceeded"}
    assert "documents_per_day" in report.failures[0].message
    stored = {d.id: d for d in lorag.documents.list("acme")}
    assert set(stored) == {"d0", "d1", "d2"}
    assert all(d.chunks >= 1 for d in stored.values())
    assert lorag.limits.usage("acme").documents == 3
    with pytest.raises(QuotaExceeded) as used_up:
        lorag.limits.check_ingest("acme")
    assert used_up.value.param == "documents_per_day" and 0 < used_up.value.retry_after <= 86400
    lorag.limits.check_ingest("other")  # another tenant is untouched
    assert lorag.documents.ingest("other", [doc(i) for i in range(6)]).added == 6


def test_ingestion_bytes_quota_counts_text_bytes(lorag):
    lorag.limits.set_overrides("acme", {"ingest_bytes_per_day": 500})
    docs = [doc(i, words=30) for i in range(5)]  # ~270 bytes each
    report = lorag.documents.ingest("acme", docs)
    assert report.added == 1 and report.failed == 4
    assert "ingest_bytes_per_day" in report.failures[0].message


def test_ingestion_embeds_in_slices_through_the_fair_gate(lorag):
    calls: list[int] = []
    limits = lorag.limits
    limits.settings.embedding_slice = 3
    vectors = limits.embed("acme", [f"t{i}" for i in range(8)],
                           lambda texts: calls.append(len(texts)) or lorag.embedder.embed_documents(texts))
    assert calls == [3, 3, 2] and vectors.shape[0] == 8


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")
def test_ingestion_embeds_on_low_priority_workers(lorag):
    limits = lorag.limits
    limits.settings.embedding_slice = 2
    seen: list[tuple[str, int]] = []

    def embed(texts):
        seen.append((threading.current_thread().name,
                     os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return lorag.embedder.embed_documents(texts)

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert limits.embed("acme", ["a", "b", "c"], embed).shape[0] == 3
    assert len(seen) == 2 and all(name.startswith("lorag-embed") for name, _ in seen)
    assert all(nice == max(own, limits.settings.embedding_nice) for _, nice in seen)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # caller unchanged
    limits.close()
    assert limits.embed("acme", ["d"], embed).shape[0] == 1  # workers start again after close


# -- HTTP -----------------------------------------------------------------------------------------

@pytest.fixture
def http(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", environment="test")
    settings.server.admin_key = SecretStr(ADMIN_KEY)
    container = FakeContainer(settings)
    keys = {}
    for tenant in ("acme", "other"):
        container.tenants.create(tenant)
        keys[tenant] = {"Authorization": f"Bearer {container.tenants.issue_key(tenant).secret}"}
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield client, keys
    container.close()


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"model": "support", "messages": [{"role": "user", "content": "what is w1?"}], "max_tokens": 8}


def test_http_429_has_openai_shape_retry_after_and_ratelimit_headers(http):
    client, keys = http
    response = client.patch("/admin/tenants/acme/limits", headers=ADMIN,
                            json={"requests_per_minute": 2, "tokens_per_minute": 5000})
    assert response.status_code == 200, response.text
    assert response.json()["effective"]["requests_per_minute"] == 2
    ok = client.post("/v1/chat/completions", headers=keys["acme"], json=CHAT)
    assert ok.status_code == 200, ok.text
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert ok.headers["x-ratelimit-limit-tokens"] == "5000"
    usage = ok.json()["usage"]
    # what it used is gone (the bucket refills ~83 a second meanwhile)
    assert 5000 - usage["total_tokens"] <= int(ok.headers["x-ratelimit-remaining-tokens"]) < 5000
    spans = dict(part.strip().split(";dur=") for part in ok.headers["server-timing"].split(","))
    assert list(spans) == ["prepare", "queue", "first", "decode", "record", "total"]
    assert float(spans["total"]) >= max(float(v) for name, v in spans.items() if name != "total")
    stream = client.post("/v1/chat/completions", headers=keys["acme"], json={**CHAT, "stream": True})
    assert stream.status_code == 200 and stream.headers["x-ratelimit-remaining-requests"] == "0"
    assert stream.text.rstrip().endswith("data: [DONE]")
    refused = client.post("/v1/chat/completions", headers=keys["acme"], json=CHAT)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    other = client.post("/v1/chat/completions", headers=keys["other"], json={**CHAT, "model": "secret"})
    assert other.status_code == 200, other.text
    deadline = time.monotonic() + 30  # usage is written off the event loop, after the answer
    while (usage := client.get("/admin/tenants/acme/usage", headers=ADMIN).json())["requests"] < 2 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert usage["requests"] == 2 and usage["completion_tokens"] > 0
    metrics = client.get("/metrics").text
    assert 'lorag_tenant_usage_requests_total{tenant="acme"} 2.0' in metrics


def test_http_admin_limits_refuse_bad_values_naming_the_field(http):
    client, _ = http
    for body, param in [({"requests_per_minute": -1}, "requests_per_minute"),
                        ({"max_concurrent_generations": 0}, "max_concurrent_generations"),
                        ({"weight": 0}, "weight"), ({"rpm": 5}, "rpm"),
                        ({"tokens_per_minute": "many"}, "tokens_per_minute")]:
        response = client.patch("/admin/tenants/acme/limits", headers=ADMIN, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["param"] == param
    ghost = client.patch("/admin/tenants/ghost/limits", headers=ADMIN, json={"weight": 2})
    assert ghost.status_code == 404 and ghost.json()["error"]["param"] == "tenant"
    assert client.get("/admin/tenants/acme/usage?day=yesterday", headers=ADMIN).status_code == 400
    reset = client.delete("/admin/tenants/acme/limits", headers=ADMIN)
    assert reset.status_code == 200 and reset.json()["overrides"] == {}


def test_http_ingestion_quota_used_up_is_a_429_before_any_work(http):
    client, keys = http
    client.patch("/admin/tenants/acme/limits", headers=ADMIN, json={"documents_per_day": 1})
    container = client.app.state.lorag
    container.limits.record("acme", documents=1)
    refused = client.post("/v1/documents", headers=keys["acme"],
                          json={"documents": [{"id": "a", "text": "hello there"}]})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert refused.json()["error"]["param"] == "documents_per_day"
    assert int(refused.headers["retry-after"]) >= 1


def test_rate_limited_error_headers_follow_openai_spelling():
    from lorag.app.limits.buckets import Window

    error = RateLimited("slow down", retry_after=0.2, windows={
        "requests": Window(60, 0, 0.2), "tokens": Window(90000, 12, 400.0)})
    response = error_response(error)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1" and response.headers["retry-after-ms"] == "200"
    assert response.headers["x-ratelimit-reset-requests"] == "200ms"
    assert response.headers["x-ratelimit-reset-tokens"] == "6m40s"


def test_ingestion_embedding_pauses_while_chats_are_in_flight(lorag):
    clock = FakeClock()
    limits = clocked(lorag, clock, embedding_slice=2, embedding_share_while_chatting=0.25).limits
    pauses: list[float] = []
    limits.sleep = pauses.append

    def embed(texts):  # each slice "takes" one second
        clock.advance(1.0)
        return lorag.embedder.embed_documents(texts)

    limits.embed("acme", ["a", "b", "c", "d"], embed)
    assert pauses == []  # nobody chatting: full speed
    ticket = limits.admit_chat("other")
    limits.embed("acme", ["a", "b", "c", "d"], embed)
    assert pauses == [pytest.approx(3.0)] * 2  # 1 s of every 4
    ticket.finish(0, 0, served=False)
    assert limits.chats_in_flight == 0
