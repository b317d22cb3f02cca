"""Rollouts: the automatic-rollback test by Monte Carlo, and what storing answers and a
traffic split cost a chat request over HTTP.

1. ``simulate``: the sequential test of ``lorag/app/rollouts/sequential.py`` with the
   default settings (alpha 0.05 split over 2 signals, so 0.025 per signal; tuned for a
   canary 2x worse), run on streams of requests where the canary gets a share ``w`` of
   traffic. An equal canary gives the false-rollback rate (it must stay at most 0.025
   per signal, over 100,000 requests of monitoring after every request); a worse one the
   requests until the rollback.
2. ``overhead``: one ``lorag serve`` (vLLM, the tiny model or SmolLM2), two brands on
   the same adapter version: ``plain`` (no split, answers not stored) and ``rollout``
   (answers stored with provenance, a 50% split between ``voice@stable`` and
   ``voice@v1``, the same version, so generation is identical). The same streaming
   client alternates the two sides each round; the ratio of p50 latencies is the cost.

    .venv/bin/python -m bench.bench_rollouts --runs 10000 --tiny
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import httpx

from bench.bench_adapters import model_path
from bench.bench_http import QUESTIONS, Side, _ok, load, set_up_lorag, start_lorag
from bench.common import percentile
from lorag.app.rollouts.sequential import AttributionTest, simulate

SCENARIOS = [  # (canary share of traffic, control bad rate, canary bad rate)
    (0.05, 0.02, 0.02), (0.50, 0.02, 0.02), (0.05, 0.10, 0.10), (0.50, 0.10, 0.10),
    (0.05, 0.02, 0.04), (0.05, 0.02, 0.10), (0.50, 0.02, 0.04), (0.50, 0.02, 0.10),
    (0.50, 0.10, 0.20),
]


def run_simulation(runs: int, requests: int) -> list[dict]:
    test = AttributionTest(alpha=0.05 / 2, ratio=2.0)  # the defaults, one signal, one arm
    rows = []
    for share, control, canary in SCENARIOS:
        result = simulate(test, arm_share=share, control_rate=control, arm_rate=canary,
                          requests=requests, runs=runs, seed=1)
        rows.append({"canary_share": share, "stable_bad_rate": control,
                     "canary_bad_rate": canary, "runs": runs, "requests": requests,
                     "rollback_rate": result.rollback_rate,
                     "median_requests_to_rollback": result.median_requests_to_rollback,
                     "p90_requests_to_rollback": result.p90_requests_to_rollback})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def set_up_brands(server, key: str) -> None:
    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=300)
    _ok(admin.post("/admin/tenants/bench/brands", json={"name": "plain", "adapter": "voice",
                                                        "store": False}))
    _ok(admin.post("/admin/tenants/bench/brands", json={"name": "rollout", "adapter": "voice",
                                                        "store": True}))
    _ok(admin.put("/admin/tenants/bench/brands/rollout/split",
                  json={"split": [{"target": "voice@v1", "percent": 50}]}))


def bodies(brand: str, max_tokens: int) -> list[dict]:
    return [{"model": brand, "messages": [{"role": "user", "content": q}], "user": f"u{i}",
             "max_tokens": max_tokens, "temperature": 0, "stream": True,
             "stream_options": {"include_usage": True}, "retrieval": {"mode": "off"}}
            for i, q in enumerate(QUESTIONS)]


async def measure(server, key: str, rounds: int, requests: dict, max_tokens: int) -> dict:
    auth = {"Authorization": f"Bearer {key}"}
    pair = {"store off": Side("store off", server.url, auth, bodies("plain", max_tokens)),
            "store on + split": Side("store on", server.url, auth, bodies("rollout", max_tokens))}
    found: dict = {}
    for concurrency, count in requests.items():
        for r in range(rounds):
            order = list(pair) if r % 2 == 0 else list(pair)[::-1]
            for name in order:
                samples, _ = await load(pair[name], count, concurrency)
                found.setdefault(concurrency, {}).setdefault(name, []).extend(
                    s.latency for s in samples)
    return {c: {name: percentile(lat, 50) * 1e3 for name, lat in sides.items()}
            | {"ratio": percentile(sides["store on + split"], 50) / percentile(sides["store off"], 50),
               "requests_per_side": len(sides["store off"])}
            for c, sides in found.items()}


def run_overhead(model: str, rounds: int, max_tokens: int) -> dict:
    from lorag.testing.tiny_model import make_lora

    path = model_path(model)
    size = {"max_model_len": 2048, "max_num_seqs": 32, "kv_cache_bytes": 512 * 2**20}
    with tempfile.TemporaryDirectory(prefix="lorag-bench-rollouts-") as tmp:
        work = Path(tmp)
        adapter = make_lora(Path(path), work / "lora", seed=7)
        server = start_lorag(path, size, work)
        try:
            key = set_up_lorag(server, adapter)
            set_up_brands(server, key)
            return asyncio.run(measure(server, key, rounds, {1: 16, 8: 32}, max_tokens))
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--tiny", action="store_true", help="the tiny random model")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {"simulation": run_simulation(args.runs, args.requests)}
    if not args.skip_overhead:
        result["overhead"] = run_overhead("tiny" if args.tiny else "smollm2", args.rounds,
                                          8 if args.tiny else 32)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
