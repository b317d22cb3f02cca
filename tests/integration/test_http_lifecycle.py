"""Start and stop of a real ``lorag serve``: it answers at once while the engine warms up
and /ready is 503 until it is done; on SIGTERM a stream in flight runs to its end and
the process exits cleanly."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from lorag.testing.server import LoragProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_warm_up_then_graceful_stop_with_a_stream_in_flight(tiny_model, tmp_path):
    process = LoragProcess(tmp_path / "data", env={
        "LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__KV_CACHE_BYTES": str(64 * 2**20),
        "LORAG_ENGINE__MAX_MODEL_LEN": "1024", "LORAG_ENVIRONMENT": "test"},
        args=("--graceful-seconds", "300"))
    process.start(wait=False)
    try:
        seen = _poll_until_ready(process)
        assert 503 in seen["ready"] and seen["ready"][-1] == 200, seen

        admin = httpx.Client(base_url=process.url, headers=process.admin_headers, timeout=30)
        key = admin.post("/admin/tenants", json={"id": "acme"}).json()["key"]["api_key"]
        assert admin.post("/admin/tenants/acme/brands", json={
            "name": "support", "retrieval": {"mode": "off"}}).status_code == 201

        events: list[str] = []
        first_event = threading.Event()

        def stream() -> None:
            with httpx.stream("POST", process.url + "/v1/chat/completions", timeout=120,
                              headers={"Authorization": f"Bearer {key}"},
                              json={"model": "support", "stream": True, "max_tokens": 200,
                                    "temperature": 1.0, "seed": 1,
                                    "messages": [{"role": "user", "content": "Talk."}]}) as response:
                for line in response.iter_lines():
                    if line:
                        events.append(line)
                        first_event.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first_event.wait(60)
        process.process.send_signal(signal.SIGTERM)
        at_signal = len(events)
        reader.join(120)
        assert process.process.wait(120) == 0, process.log()
        assert events[-1] == "data: [DONE]"
        assert len(events) > at_signal + 2  # the stream went on after the signal
        assert '"finish_reason"' in events[-2], events[-3:]
        with pytest.raises(httpx.TransportError):
            httpx.get(process.url + "/health", timeout=2)
    finally:
        process.stop()


def _poll_until_ready(process: LoragProcess, timeout: float = 300) -> dict:
    seen: dict = {"ready": []}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.process.poll() is None, process.log()
        try:  # once listening, the server answers at once, also while vLLM starts
            ready = httpx.get(process.url + "/ready", timeout=httpx.Timeout(10, connect=1))
        except httpx.ConnectError:
            time.sleep(0.05)
            continue
        if not seen["ready"] or seen["ready"][-1] != ready.status_code:
            seen["ready"].append(ready.status_code)
        if ready.status_code == 200:
            return seen
        assert ready.json()["error"]["code"] == "warming_up"
        time.sleep(0.05)
    raise TimeoutError(process.log())
