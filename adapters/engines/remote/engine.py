"""The ``remote`` engine: generation on a fleet of stock vLLM OpenAI servers.

lorag renders the chat template and counts tokens itself (the served base model's
tokenizer is local) and sends the prompt's token ids to ``/v1/completions``, so an answer
is the same token for token wherever it runs, and the same as the in-process engine's.

Adapters: each version is published once to the folder the servers share with lorag
(``engine.remote.shared_dir``, a hard-linked or copied snapshot renamed into place) and
loaded on a server under an immutable name, ``tenant/name/v<version>-<id>``, on its first
request there (a new version is a new name: vLLM serves stale weights when a name is
reloaded, vllm#42125; the id, never reused, keeps a re-created tenant's version 1 apart
from the old one's). Removing a version unloads it from every server, then deletes its
published files once its running requests are done.

Routing: ``router.choose`` (rendezvous hashing with bounded-load spill-over, holder first;
least-loaded for the base model). Faults: a request that fails before its first token is
retried once on the next server; one that fails after it ends with Unavailable (the HTTP
layer sends it as a clean error event).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import AsyncIterator

from adapters.engines.common import (AdapterSnapshots, ChatPrompts, InFlight, adapter_label,
                                     check_logit_bias, prompt_text, room_for)
from adapters.engines.protocol import (AdapterRef, EngineFeature, GenerationChunk,
                                      GenerationRequest, Sampling, TokenLogprob)
from adapters.engines.remote.client import ServerRefused, ServerUnreachable, VLLMClient
from adapters.engines.remote.pool import Server, ServerPool, wait_answering
from adapters.engines.remote.router import Decision, RecentAdapters, choose
from adapters.settings import EngineSettings
from adapters.validation import InvalidAdapter
from lorag.core.errors import LoragError, NotFound, ServerError, Unavailable

log = logging.getLogger(__name__)

ATTEMPTS = 2  # the first server, and one retry on the next
OURS = re.compile(r"^[^/]+/[^/]+/v\d+-\d+$")  # names lorag loads (server_name below)


def server_name(ref: AdapterRef) -> str:
    """The immutable name a version is loaded under on the servers."""
    return f"{adapter_label(ref)}-{ref.int_id}"


class _Restart(Exception):
    """The chosen server failed before the first token: try the next one."""


class RemoteEngine(ChatPrompts):
    """InferenceEngine over vLLM servers. Construction is cheap; ``warm_up()`` checks
    every server and refuses to start when one is unusable (saying which and why).

    Every sampling feature is passed on to the servers' ``/v1/completions``: guided
    decoding as vLLM's ``structured_outputs`` (start the servers with
    ``--structured-outputs-config '{"backend": "xgrammar", "disable_any_whitespace": true}'``
    for the compact JSON the in-process engine writes)."""

    features = frozenset(EngineFeature)

    def __init__(self, settings: EngineSettings, *, model: str, work_dir: Path):
        self.settings = settings
        self.remote = settings.remote
        self.model = str(model)
        self.served_model = self.remote.served_model or self.model
        self.max_model_len = settings.max_model_len
        self.work_dir = Path(work_dir)
        self.shared_dir = Path(self.remote.shared_dir or self.work_dir / "published")
        self.server_dir = self.remote.server_shared_dir or str(self.shared_dir)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tokenizer = None
        self._published: AdapterSnapshots | None = None
        self._pool: ServerPool | None = None
        self._inflight = InFlight()
        self._running: set[str] = set()  # request ids being generated
        self._aborted: set[str] = set()
        self._removing: dict[str, asyncio.Lock] = {}
        self._starting = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Load the tokenizer, check every server (answers, serves ``served_model``,
        loads LoRA adapters at run time), unload adapters an earlier lorag left on them,
        start the health checks. Raises ServerError naming each unusable server."""
        async with self._starting:
            if self._pool is None:
                await self._start()

    async def _start(self) -> None:
        if not self.remote.servers:
            raise ServerError("the remote engine has no servers: set engine.remote.servers "
                              "(LORAG_ENGINE__REMOTE__SERVERS) or pass --server URL",
                              param="engine.remote.servers")
        try:
            from transformers import AutoTokenizer

            self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.model)
        except Exception as exc:
            raise ServerError(f"the tokenizer of {self.model} could not be loaded (the remote "
                              f"engine renders prompts locally): {exc}") from exc
        servers = [self._server(url) for url in dict.fromkeys(self.remote.servers)]
        pool = ServerPool(servers, served_model=self.served_model,
                          interval=self.remote.health_interval_s,
                          check_timeout=self.remote.connect_timeout_s)
        problems = await asyncio.gather(*(self._admit(s) for s in servers))
        refused = [p for p in problems if p]
        if refused:
            await pool.stop()
            raise ServerError("cannot serve from these vLLM servers: " + "; ".join(refused),
                              param="engine.remote.servers")
        self._published = AdapterSnapshots(self.shared_dir)
        self.loop = asyncio.get_running_loop()
        self._pool = pool
        pool.start_checks()
        log.info("remote engine ready model=%s servers=%s", self.served_model,
                 ", ".join(s.name for s in servers))

    def _server(self, url: str) -> Server:
        key = self.remote.api_key.get_secret_value() if self.remote.api_key else None
        client = VLLMClient(url, connect_timeout=self.remote.connect_timeout_s,
                            read_timeout=self.remote.request_timeout_s, api_key=key)
        return Server(client.url, client, RecentAdapters(self.remote.adapters_per_server))

    async def _admit(self, server: Server) -> str | None:
        """None when ``server`` can serve (it is then healthy); else what is wrong with it."""
        deadline = time.monotonic() + self.remote.startup_timeout_s
        try:
            models = await wait_answering(server.client, deadline, self.remote.connect_timeout_s)
            problem = self._model_problem(models) or await server.client.probe_runtime_lora()
        except ServerUnreachable as exc:
            return (f"{server.name} does not answer ({exc}): start it, or fix its URL in "
                    "engine.remote.servers")
        except Exception as exc:  # it answers, but not like a vLLM OpenAI server
            return f"{server.name} is not a vLLM OpenAI server ({type(exc).__name__}: {exc})"
        if problem:
            return f"{server.name}: {problem}"
        for stale in sorted(m.id for m in models if m.parent is not None and OURS.match(m.id)):
            await server.client.unload_adapter(stale)  # an earlier lorag's: ids may be reused
            log.info("unloaded a stale adapter server=%s adapter=%s", server.name, stale)
        server.healthy = True
        return None

    def _model_problem(self, models) -> str | None:
        bases = [m for m in models if m.parent is None]
        if any(self.served_model in (m.root, m.id) for m in bases):
            return None
        served = ", ".join(sorted({m.root or m.id for m in bases})) or "no model"
        return (f"it serves {served}, not lorag's base model {self.served_model}: start it "
                "with --model on the same model, or set engine.remote.served_model to the "
                "name it serves that model under")

    def ready(self) -> bool:
        return self._pool is not None and bool(self._pool.healthy())

    def health(self) -> dict[str, object]:
        """For /ready: how many servers are healthy, and why the others are out."""
        servers = self._pool.servers if self._pool else []
        return {"servers": len(servers), "servers_healthy": sum(s.healthy for s in servers),
                "servers_out": {s.name: s.why_out for s in servers if not s.healthy}}

    def not_ready_reason(self) -> str:
        if self._pool is None:
            return "the remote engine has not started"
        return (f"no healthy inference server (0 of {len(self._pool.servers)}): "
                + "; ".join(f"{s.name}: {s.why_out}" for s in self._pool.servers))

    def stats(self) -> dict[str, float]:
        """Numbers for /metrics, summed over the servers; ``server_stats()`` per server."""
        servers = self._servers()
        totals = {key: sum(getattr(s.counts, key) for s in servers)
                  for key in ("adapter_loads", "adapter_load_failures", "adapter_unloads")}
        return {"adapters_loaded": len(set().union(*(s.loaded for s in servers))),
                "requests_running": sum(s.outstanding for s in servers),
                "servers": len(servers), "servers_healthy": sum(s.healthy for s in servers),
                **totals}

    def server_stats(self) -> dict[str, dict[str, float]]:
        return self._pool.server_stats() if self._pool else {}

    def _servers(self) -> list[Server]:
        return self._pool.servers if self._pool else []

    async def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.stop()
            log.info("remote engine shut down servers=%s", ", ".join(s.name for s in pool.servers))

    def _require_ready(self) -> None:
        if self._tokenizer is None or self._pool is None:
            raise Unavailable("the inference engine is not running", param="model")

    # -- generation --------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream deltas from one server. Raises InvalidInput (messages too long),
        NotFound (a deleted adapter), InvalidAdapter (the servers refuse it), Unavailable
        (no healthy server, or the server failed after the first token)."""
        self._require_ready()
        check_logit_bias(request.sampling, len(self._tokenizer))
        ids = self._tokenizer.encode(prompt_text(self, request), add_special_tokens=False)
        max_tokens = room_for(len(ids), request.sampling.max_tokens, self.max_model_len)
        ref = request.adapter
        name = server_name(ref) if ref else None
        self._inflight.add(ref.int_id if ref else None)  # before publishing: a removal waits
        self._running.add(request.request_id)
        try:
            path = await self._publish(ref) if ref else None
            body = self._body(name or self.served_model, ids, max_tokens, request.sampling)
            async for chunk in self._attempts(request, name, path, body, len(ids)):
                yield chunk
        finally:
            self._inflight.done(ref.int_id if ref else None)
            self._running.discard(request.request_id)
            self._aborted.discard(request.request_id)

    async def _attempts(self, request: GenerationRequest, name: str | None, path: str | None,
                        body: dict, prompt_tokens: int) -> AsyncIterator[GenerationChunk]:
        tried: list[str] = []
        for attempt in range(ATTEMPTS):
            decision = self._route(name, tried)
            server = decision.server
            tried.append(server.name)
            if attempt:
                server.counts.retries += 1
            try:
                async for chunk in self._on(server, request, name, path, body, prompt_tokens):
                    yield chunk
                return
            except _Restart as exc:
                log.warning("request=%s failed on server=%s before its first token (%s)%s",
                            request.request_id, server.name, exc,
                            "; retrying on the next server" if attempt + 1 < ATTEMPTS else "")
        raise Unavailable("the inference servers failed this request (tried "
                          + ", ".join(tried) + ")", param="model")

    def _route(self, name: str | None, tried: list[str]) -> Decision:
        healthy = self._pool.healthy() if self._pool else []
        decision = choose(healthy, name, self.remote.load_factor, exclude=tried)
        if decision is None:
            raise Unavailable(self.not_ready_reason(), param="model", code="no_healthy_server")
        server = decision.server
        server.counts.affinity_hits += decision.reason == "affinity"
        server.counts.spills += decision.reason == "spill"
        log.debug("route adapter=%s server=%s reason=%s rank=%d warm=%s outstanding=%d",
                  name or "base", server.name, decision.reason, decision.rank, decision.warm,
                  server.outstanding)
        return decision

    async def _on(self, server: Server, request: GenerationRequest, name: str | None,
                  path: str | None, body: dict, prompt_tokens: int) -> AsyncIterator[GenerationChunk]:
        """The request on ``server``. Raises _Restart when the server fails before the
        first token, Unavailable when after."""
        server.outstanding += 1
        server.counts.requests += 1
        started = False
        try:
            if name is not None:
                await self._ensure_loaded(server, name, path, request.adapter)
                server.recent.touch(name)
            async for chunk in self._relay(server, request, body, prompt_tokens):
                started = True
                yield chunk
        except ServerUnreachable as exc:
            self._pool.take_out(server, str(exc))
            if not started:
                raise _Restart(str(exc)) from None
            log.error("request=%s: server=%s failed mid-answer: %s", request.request_id,
                      server.name, exc)
            raise Unavailable(f"the inference server failed while answering: {exc}",
                              param="model", code="server_failed") from None
        except ServerRefused as exc:
            if not started and exc.status == 404 and name is not None:
                server.loaded.discard(name)  # it restarted and lost the adapter: load again
                raise _Restart(f"it no longer held {name}") from None
            raise self._refused(exc, request) from None
        finally:
            server.outstanding -= 1

    async def _relay(self, server: Server, request: GenerationRequest, body: dict,
                     prompt_tokens: int) -> AsyncIterator[GenerationChunk]:
        produced = 0
        stream = server.client.stream_completion(body)
        try:
            async for event in stream:
                if request.request_id in self._aborted:
                    return  # closing the stream closes the connection: vLLM aborts it
                for choice in event.get("choices") or ():
                    tokens = list(choice.get("token_ids") or ())
                    produced += len(tokens)
                    scored = (_token_logprobs(choice.get("logprobs") or {}, request.sampling)
                              if request.sampling.logprobs else [])
                    yield GenerationChunk(
                        text=choice.get("text") or "", token_ids=tokens,
                        logprobs=[t.logprob for t in scored], token_logprobs=scored,
                        finish_reason=_finish_reason(choice.get("finish_reason")),
                        prompt_tokens=prompt_tokens, completion_tokens=produced)
        finally:
            await stream.aclose()

    def _body(self, model: str, ids: list[int], max_tokens: int, sampling: Sampling) -> dict:
        body = {"model": model, "prompt": ids, "max_tokens": max_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "stream": True,
                "return_token_ids": True, "stream_options": {"include_usage": True}}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.logprobs:
            body["logprobs"] = sampling.top_logprobs
        if sampling.presence_penalty or sampling.frequency_penalty:
            body.update(presence_penalty=sampling.presence_penalty,
                        frequency_penalty=sampling.frequency_penalty)
        if sampling.logit_bias:
            body["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias}
        if sampling.structured is not None:
            schema = sampling.structured.schema
            body["structured_outputs"] = ({"json": schema} if schema is not None
                                          else {"json_object": True})
        return body

    def _refused(self, exc: ServerRefused, request: GenerationRequest) -> LoragError:
        adapter = adapter_label(request.adapter) if request.adapter else "base"
        log.error("server refused request=%s adapter=%s: %s", request.request_id, adapter, exc)
        return ServerError(f"the inference server refused the request: {exc}")

    async def abort(self, request_id: str) -> None:
        if request_id in self._running:  # its stream ends at the next event
            self._aborted.add(request_id)

    # -- adapters ----------------------------------------------------------------------

    async def _publish(self, ref: AdapterRef) -> str:
        """The version's folder as the servers see it, published on first use. Raises
        NotFound for a deleted version."""
        if not (Path(ref.path) / "adapter_config.json").is_file():
            raise NotFound(f"adapter {ref.name!r} version {ref.version} was deleted",
                           param="adapter", code="adapter_not_found")
        async with self._removing.setdefault(server_name(ref), asyncio.Lock()):
            local = await asyncio.to_thread(self._published.path, ref)
        return str(Path(self.server_dir) / local.relative_to(self.shared_dir))

    async def _ensure_loaded(self, server: Server, name: str, path: str, ref: AdapterRef) -> None:
        if name in server.loaded:
            return
        async with server.locks.setdefault(name, asyncio.Lock()):
            if name in server.loaded:
                return
            started = time.perf_counter()
            try:
                await server.client.load_adapter(name, path)
            except ServerRefused as exc:
                server.counts.adapter_load_failures += 1
                log.error("adapter load refused server=%s tenant=%s adapter=%s version=%s "
                          "id=%s: %s", server.name, ref.tenant_id, ref.name, ref.version,
                          ref.int_id, exc)
                hint = (" (the servers find no adapter at that path: check that they mount "
                        "engine.remote.shared_dir at engine.remote.server_shared_dir)"
                        if exc.status == 404 else "")
                raise InvalidAdapter(f"the inference server could not load adapter "
                                     f"{ref.name!r}: {exc}{hint}", param="adapter") from None
            seconds = time.perf_counter() - started
            server.loaded.add(name)
            server.counts.adapter_loads += 1
            server.counts.adapter_load_seconds += seconds
            log.info("loaded adapter server=%s tenant=%s adapter=%s version=%s id=%s in %.3f s",
                     server.name, ref.tenant_id, ref.name, ref.version, ref.int_id, seconds)

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        """Unload ``adapter`` from every server that holds it, then, once its running
        requests are done, delete its published files. A request arriving meanwhile
        waits, then publishes and loads it afresh."""
        if self._pool is None:
            return
        name = server_name(adapter)
        async with self._removing.setdefault(name, asyncio.Lock()):
            await asyncio.gather(*(self._unload(s, name, adapter) for s in self._pool.servers
                                   if name in s.loaded))
            await self._inflight.wait_idle(adapter.int_id)
            await asyncio.to_thread(self._published.drop, adapter)
        log.info("removed adapter tenant=%s adapter=%s version=%s id=%s", adapter.tenant_id,
                 adapter.name, adapter.version, adapter.int_id)

    async def _unload(self, server: Server, name: str, ref: AdapterRef) -> None:
        async with server.locks.setdefault(name, asyncio.Lock()):
            server.loaded.discard(name)
            server.recent.discard(name)
            try:
                await server.client.unload_adapter(name)
            except (ServerUnreachable, ServerRefused) as exc:  # a restarted server lost it anyway
                log.warning("unload failed server=%s tenant=%s adapter=%s version=%s: %s",
                            server.name, ref.tenant_id, ref.name, ref.version, exc)
                return
            server.counts.adapter_unloads += 1


def _token_logprobs(logprobs: dict, sampling: Sampling) -> list[TokenLogprob]:
    """A completions ``logprobs`` object (``tokens``, ``token_logprobs``, ``top_logprobs``)
    as TokenLogprob, the alternatives most likely first."""
    tops = logprobs.get("top_logprobs") or []
    scored = []
    for i, (token, logprob) in enumerate(zip(logprobs.get("tokens") or [],
                                             logprobs.get("token_logprobs") or [])):
        alternatives = sorted((tops[i] or {}).items(), key=lambda kv: -kv[1]) if i < len(tops) else []
        scored.append(TokenLogprob(token, float(logprob),
                                   tuple(alternatives[: sampling.top_logprobs])))
    return scored


def _finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"
