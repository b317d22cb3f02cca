"""Prometheus metrics of one app: HTTP requests by route, tenant and brand; chat
tokens and time to first token; retrieval latency; adapter loads and residency (from
the engine); ingestion jobs and documents (from the catalog). One registry per app, so
several apps (tests) never share counters."""

from __future__ import annotations

import logging
import time
from typing import Iterable

from prometheus_client import (CollectorRegistry, Counter, Histogram, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, Metric,
                                     SummaryMetricFamily)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lorag.app.container import Lorag
from lorag.app.quality.guard import GroundingVerdict
from lorag.core.limits import USAGE_FIELDS

log = logging.getLogger(__name__)

SHARE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CONTENT_TYPE = CONTENT_TYPE_LATEST
COUNTED = ("loads", "unloads", "failures")  # suffixes of the engine's running totals
SERVER_COUNTED = ("requests", "seconds", "hits", "spills", "retries")

disable_created_metrics()  # the *_created series double the output and say little here


class Metrics:
    def __init__(self, lorag: Lorag | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lorag_http_requests", "HTTP requests answered.",
                                ["route", "method", "status", "tenant", "brand"], registry=r)
        self.latency = Histogram("lorag_http_request_duration_seconds",
                                 "Time from request to the last byte of the response.",
                                 ["route", "method", "tenant", "brand"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("lorag_chat_tokens", "Chat tokens, prompt (in) and completion (out).",
                              ["tenant", "brand", "kind"], registry=r)
        self.ttft = Histogram("lorag_chat_time_to_first_token_seconds",
                              "Time from a chat request to its first generated text.",
                              ["tenant", "brand"], buckets=LATENCY_BUCKETS, registry=r)
        self.aborted = Counter("lorag_chat_aborted", "Chat requests whose client went away "
                               "before the answer ended (the engine request is aborted).",
                               ["tenant", "brand"], registry=r)
        self.retrieval = Histogram("lorag_retrieval_duration_seconds",
                                   "Time to search a tenant's index.", ["tenant", "route"],
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.groundedness = Histogram("lorag_chat_groundedness", "Share of answer sentences "
                                      "a source supports, for brands with the grounding guard on.",
                                      ["tenant", "brand"], buckets=SHARE_BUCKETS, registry=r)
        self.guard_actions = Counter("lorag_chat_grounding_actions", "Answers the grounding "
                                     "guard found ungrounded, by what it did (flagged, abstained).",
                                     ["tenant", "brand", "action"], registry=r)
        self.documents_submitted = Counter("lorag_ingest_documents_submitted",
                                           "Documents submitted for ingestion over HTTP.",
                                           ["tenant"], registry=r)
        if lorag is not None:
            r.register(StateCollector(lorag))

    def observe_request(self, route: str, method: str, status: int, tenant: str, brand: str,
                        seconds: float) -> None:
        self.requests.labels(route, method, str(status), tenant, brand).inc()
        self.latency.labels(route, method, tenant, brand).observe(seconds)

    def observe_chat(self, tenant: str, brand: str, prompt_tokens: int,
                     completion_tokens: int) -> None:
        self.tokens.labels(tenant, brand, "prompt").inc(prompt_tokens)
        self.tokens.labels(tenant, brand, "completion").inc(completion_tokens)

    def observe_grounding(self, tenant: str, brand: str, verdict: GroundingVerdict) -> None:
        if verdict.groundedness is not None:
            self.groundedness.labels(tenant, brand).observe(verdict.groundedness)
        if not verdict.grounded:
            action = "abstained" if verdict.abstained else "flagged"
            self.guard_actions.labels(tenant, brand, action).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector:
    """Read at scrape time: engine adapter stats and catalog job counts."""

    def __init__(self, lorag: Lorag):
        self.lorag = lorag

    def describe(self) -> list[Metric]:
        return []  # no eager collect at registration

    def collect(self) -> Iterable[Metric]:
        try:
            yield from self._engine()
            yield from self._jobs()
            yield from self._targets()
            yield from self._usage()
        except Exception:  # a scrape must never fail the endpoint
            log.exception("metrics collection failed")

    def _engine(self) -> Iterable[Metric]:
        engine = vars(self.lorag).get("engine")  # only if built; a scrape builds nothing
        stats = getattr(engine, "stats", None)
        if stats is None:
            return
        for name, value in stats().items():
            # Running totals (adapter_loads, ..._failures) are counters; the rest are levels.
            family = CounterMetricFamily if name.endswith(COUNTED) else GaugeMetricFamily
            yield family(f"lorag_engine_{name}", f"Engine statistic {name}.", value=value)
        yield from self._servers(getattr(engine, "server_stats", None))

    def _servers(self, server_stats) -> Iterable[Metric]:
        """Per inference server (the remote engine), labelled by its URL."""
        if server_stats is None:
            return
        families: dict[str, Metric] = {}
        for server, stats in server_stats().items():
            for name, value in stats.items():
                if name not in families:
                    counted = name.endswith(COUNTED + SERVER_COUNTED)
                    family = CounterMetricFamily if counted else GaugeMetricFamily
                    families[name] = family(f"lorag_engine_server_{name}",
                                            f"Per inference server: {name}.", labels=["server"])
                families[name].add_metric([server], value)
        yield from families.values()

    def _jobs(self) -> Iterable[Metric]:
        rows = self.lorag.jobs.db.query(
            "SELECT kind, status, COUNT(*) AS n, COALESCE(SUM(completed), 0) AS completed, "
            "COALESCE(SUM(failed), 0) AS failed FROM jobs GROUP BY kind, status")
        jobs = GaugeMetricFamily("lorag_jobs", "Jobs by kind and status.", labels=["kind", "status"])
        items = GaugeMetricFamily("lorag_job_items", "Items of jobs by kind and outcome.",
                                  labels=["kind", "outcome"])
        totals: dict[tuple[str, str], int] = {}
        for row in rows:
            jobs.add_metric([row["kind"], row["status"]], row["n"])
            for outcome in ("completed", "failed"):
                key = (row["kind"], outcome)
                totals[key] = totals.get(key, 0) + row[outcome]
        for (kind, outcome), value in totals.items():
            items.add_metric([kind, outcome], value)
        yield jobs
        yield items


    def _targets(self) -> Iterable[Metric]:
        """Per brand target and adapter version (the rollout readout, from the catalog,
        so every process serving the catalog agrees)."""
        rows = self.lorag.answers.readout(None)
        labels = ["tenant", "brand", "target", "version", "role"]
        families = {
            "requests": CounterMetricFamily("lorag_target_requests", "Requests per target.", labels=labels),
            "errors": CounterMetricFamily("lorag_target_errors", "Failed requests per target.", labels=labels),
            "latency_seconds": CounterMetricFamily(
                "lorag_target_latency_seconds", "Total request seconds per target "
                "(divide by requests for the mean).", labels=labels),
            "prompt_tokens": CounterMetricFamily("lorag_target_prompt_tokens", "Prompt tokens per target.", labels=labels),
            "completion_tokens": CounterMetricFamily("lorag_target_completion_tokens", "Completion tokens per target.", labels=labels),
            "feedback_up": CounterMetricFamily("lorag_target_feedback_up", "+1 ratings per target.", labels=labels),
            "feedback_down": CounterMetricFamily("lorag_target_feedback_down", "-1 ratings per target.", labels=labels),
        }
        groundedness = SummaryMetricFamily(
            "lorag_target_groundedness", "The grounding guard's scores of a target's answers "
            "(_sum / _count = the mean; answers it scored only).", labels=labels)
        for row in rows:
            values = [row["tenant_id"], row["brand"], row["target"], str(row["version"]), row["role"]]
            for column, family in families.items():
                family.add_metric(values, row[column])
            groundedness.add_metric(values, row["groundedness_count"], row["groundedness_sum"])
        yield from families.values()
        yield groundedness


    def _usage(self) -> Iterable[Metric]:
        """Per tenant: usage over all days (the catalog's ledger, the base of quotas and
        billing), chat requests in flight and generations waiting for a slot."""
        limits = self.lorag.limits
        families = {name: CounterMetricFamily(f"lorag_tenant_usage_{name}",
                                              f"Per tenant, all days: {name}.", labels=["tenant"])
                    for name in USAGE_FIELDS}
        for usage in limits.store.usage_totals():
            for name, family in families.items():
                family.add_metric([usage.tenant_id], getattr(usage, name))
        yield from families.values()
        active = GaugeMetricFamily("lorag_tenant_active_generations", "Chat requests of the "
                                   "tenant admitted and not finished.", labels=["tenant"])
        for tenant, count in limits.active().items():
            active.add_metric([tenant], count)
        yield active
        yield GaugeMetricFamily("lorag_generations_waiting", "Chat requests waiting for a "
                                "generation slot (admitted in the scheduling order).",
                                value=limits.generations.waiting)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, tenant and brand (pure
    ASGI: the time covers a whole streamed response)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = scope.get("route")
            state = scope.get("state", {})
            self.metrics.observe_request(
                getattr(route, "path", "unmatched"), scope["method"], status,
                state.get("tenant", ""), state.get("brand", ""), time.perf_counter() - started)
