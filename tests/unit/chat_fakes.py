"""Fakes of the parts ChatService and the HTTP app use: brands, adapters, retrieval,
an engine (one token per word), and a container joining them with the real tenants
and jobs stores. Each satisfies the Protocol ChatService takes (``lorag.app.ports``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.engines.protocol import AdapterRef, EngineFeature, GenerationChunk, TokenLogprob
from lorag.app.chat import ChatService
from lorag.core.brands import Brand
from lorag.core.errors import Conflict, NotFound
from lorag.core.modes import RetrievalMode
from lorag.app.container import Lorag
from retrieval.types import SearchHit


def make_brand(name: str, *, adapter_name: str | None = None,
               system_prompt: str = "You are Acme's assistant.", top_k: int | None = None,
               mode: RetrievalMode | None = None, filters: dict | None = None,
               tenant_id: str = "acme") -> Brand:
    return Brand(tenant_id, name, adapter_name, system_prompt, top_k, mode, filters,
                 created_at=1_700_000_000.0)


class FakeBrands:
    def __init__(self, brands: dict[tuple[str, str], Brand]):
        self.brands = brands

    def get(self, tenant_id: str, name: str) -> Brand:
        try:
            return self.brands[tenant_id, name]
        except KeyError:
            raise NotFound(f"brand {name!r} not found", param="brand") from None

    def list(self, tenant_id: str) -> list[Brand]:
        return [b for (t, _), b in sorted(self.brands.items()) if t == tenant_id]


class FakeAdapters:
    def resolve(self, tenant_id: str, name: str) -> AdapterRef:
        if name == "gone":
            raise NotFound("adapter gone", param="adapter")
        if name == "narrowed":
            raise Conflict("adapter targets v_proj; the engine applies LoRA to q_proj only",
                           param="adapter", code="adapter_not_served")
        return AdapterRef(tenant_id, name, 1, 7, Path("/adapters") / tenant_id / name / "1")


class FakeRetrieval:
    def __init__(self, hits: list[SearchHit]):
        self.hits = hits
        self.calls: list[dict] = []
        self.state = {"covered": len(hits), "generation": 0}

    def search(self, tenant: str, query: str, *, k: int | None = None,
               mode: RetrievalMode | str | None = None, filters: dict | None = None,
               document_ids: list[str] | None = None) -> list[SearchHit]:
        self.calls.append(dict(tenant=tenant, query=query, k=k, mode=mode, filters=filters))
        return self.hits[: k or 5]

    def index_state(self, tenant: str) -> dict[str, int] | None:
        return dict(self.state)

    def close(self) -> None:
        pass


class FakeEngine:
    """One token per whitespace-separated word; the template is ``<role>`` + content.
    ``fail_after`` makes generation raise after that many chunks."""

    features = frozenset(EngineFeature)

    def __init__(self, max_model_len: int = 400, reply: tuple[str, ...] = ("Hello", " there")):
        self.max_model_len = max_model_len
        self.reply = reply
        self.requests: list = []
        self.aborted: list[str] = []
        self.fail_after: int | None = None
        self.failure: Exception = RuntimeError("boom /secret/path")
        self.delay = 0.0
        self.warm_up_seconds = 0.0
        self.warmed = False

    async def warm_up(self) -> None:
        await asyncio.sleep(self.warm_up_seconds)
        self.warmed = True

    def ready(self) -> bool:
        return self.warmed

    async def shutdown(self) -> None:
        self.warmed = False

    def render_chat(self, messages: list[dict]) -> str:
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def generate(self, request):
        self.requests.append(request)
        for i, text in enumerate(self.reply):
            if self.fail_after is not None and i >= self.fail_after:
                raise self.failure
            await asyncio.sleep(self.delay)
            last = i == len(self.reply) - 1
            scored = [TokenLogprob(text, -0.5, (("x", -0.1),))] if request.sampling.logprobs else []
            yield GenerationChunk(text=text, finish_reason="stop" if last else None,
                                  logprobs=[t.logprob for t in scored], token_logprobs=scored,
                                  prompt_tokens=self.count_tokens(request.prompt),
                                  completion_tokens=i + 1)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


class FakeEmbedder:
    def warm_up(self) -> None:
        pass


def hit(n: int, words: int = 5, score: float | None = None, lexical: bool = False) -> SearchHit:
    """A dense hit (its score is its cosine), also a lexical one when ``lexical``."""
    score = score if score is not None else 1.0 - n / 10
    return SearchHit(chunk_id=100 + n, document_id=f"doc-{n}", position=0,
                     text=" ".join(f"w{n}" for _ in range(words)), title=f"Title {n}",
                     source=f"file{n}.md", score=score, dense_score=score, lexical_match=lexical)


def default_brands() -> dict[tuple[str, str], Brand]:
    return {("acme", "support"): make_brand("support", adapter_name="voice"),
            ("acme", "plain"): make_brand("plain", system_prompt="", top_k=2,
                                          mode=RetrievalMode.LEXICAL, filters={"lang": "en"}),
            ("other", "secret"): make_brand("secret", tenant_id="other")}


class FakeContainer(Lorag):
    """The real container (tenants, jobs, settings) with fakes for the heavy parts."""

    def __init__(self, settings, *, hits: list[SearchHit] | None = None):
        super().__init__(settings)
        self.engine = FakeEngine()
        self.embedder = FakeEmbedder()
        self.brands = FakeBrands(default_brands())
        self.adapters = FakeAdapters()
        self.retrieval = FakeRetrieval([hit(i) for i in range(1, 6)] if hits is None else hits)
        self.chat = ChatService(brands=self.brands, adapters=self.adapters,
                                retrieval=self.retrieval, engine=self.engine,
                                settings=settings.chat)
