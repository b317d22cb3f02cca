"""OpenAI's Responses API with ``file_search``: a brand answers, grounded in the files of
the named vector stores, with ``file_citation`` annotations; stored responses continue
a conversation through ``previous_response_id``.

lorag does the search itself (the model never decides to call the tool): with a
``file_search`` tool the last user message is searched in the stores (lorag's hybrid
search restricted by a ``vector_store_id`` filter), the sources go into the prompt as
in chat, and the answer carries one ``file_search_call`` item before its message.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Sequence

from lorag.app.chat import ChatRequest, ChatService, Citation, PreparedChat, RetrievalOptions
from lorag.app.vector_stores import VectorStoreService
from lorag.core.modes import RetrievalMode
from lorag.core.responses import ResponseStore, StoredResponse

_MARKER = re.compile(r"\[(\d+)\]")
_DOCUMENT = re.compile(r"^vector_store/(?P<store>[^/]+)/(?P<file>[^/]+)$")


@dataclass(frozen=True)
class FileSearch:
    """The ``file_search`` tool of a request; ``param`` names it (``tools[0]``)."""

    vector_store_ids: tuple[str, ...]
    filters: object = None  # OpenAI's comparison / compound filter, parsed by the stores
    max_num_results: int | None = None
    param: str = "tools[0]"


@dataclass(frozen=True)
class ResponseRequest:
    model: str  # a brand of the tenant
    input: Sequence[dict]  # {"role", "content"} messages, content a string
    instructions: str | None = None
    file_search: FileSearch | None = None
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float = 1.0
    routing_key: str | None = None
    id: str = field(default_factory=lambda: f"resp_{uuid.uuid4().hex}")


@dataclass(frozen=True)
class FileCitation:
    file_id: str
    filename: str
    index: int  # where in the answer's text: at its first [n] marker, else at the end


@dataclass(frozen=True)
class PreparedResponse:
    request: ResponseRequest
    chat: PreparedChat
    conversation: list[dict]  # earlier turns and this request's input, without instructions
    query: str | None  # what file_search searched (None: no file_search)
    created_at: float = field(default_factory=time.time)


class ResponseService:
    def __init__(self, chat: ChatService, vector_stores: VectorStoreService, store: ResponseStore):
        self.chat = chat
        self.vector_stores = vector_stores
        self.store = store

    async def prepare(self, tenant: str, request: ResponseRequest) -> PreparedResponse:
        """The conversation (the previous response's, then this input), searched in the
        file_search stores and fitted to the budget. Raises NotFound
        (``previous_response_id``, ``tools[i].vector_store_ids``, ``model``),
        InvalidInput (``tools[i].filters...`` and what chat refuses)."""
        history = []
        if request.previous_response_id is not None:
            history = self.store.get(tenant, request.previous_response_id,
                                     param="previous_response_id").conversation
        conversation = [*history, *request.input]
        system = [{"role": "system", "content": request.instructions}] if request.instructions else []
        chat_request = ChatRequest(
            brand=request.model, messages=[*system, *conversation],
            max_tokens=request.max_output_tokens, temperature=request.temperature,
            top_p=request.top_p, retrieval=self._retrieval(tenant, request.file_search),
            request_id=request.id, routing_key=request.routing_key)
        prepared = await self.chat.prepare(tenant, chat_request)
        query = _last_user_text(conversation) if request.file_search else None
        return PreparedResponse(request, prepared, conversation, query)

    def _retrieval(self, tenant: str, tool: FileSearch | None) -> RetrievalOptions:
        if tool is None:
            return RetrievalOptions(mode=RetrievalMode.OFF)
        for i, store_id in enumerate(tool.vector_store_ids):
            self.vector_stores.catalog.get(tenant, store_id,
                                           param=f"{tool.param}.vector_store_ids[{i}]")
        where = self.vector_stores.restriction(tool.vector_store_ids, tool.filters,
                                               param=f"{tool.param}.filters")
        return RetrievalOptions(top_k=tool.max_num_results, mode=RetrievalMode.HYBRID,
                                filters=where)

    def save(self, prepared: PreparedResponse, text: str, body: dict) -> None:
        """Keep the response, so a later request can continue from it."""
        request = prepared.request
        self.store.save(StoredResponse(
            request.id, prepared.chat.tenant_id, request.model, prepared.created_at,
            request.previous_response_id,
            [*prepared.conversation, {"role": "assistant", "content": text}], body))

    def get(self, tenant: str, response_id: str) -> StoredResponse:
        return self.store.get(tenant, response_id)

    def delete(self, tenant: str, response_id: str) -> None:
        self.store.delete(tenant, response_id)


def file_citations(citations: Sequence[Citation], text: str) -> list[FileCitation]:
    """One annotation per file the answer was given as a source, in source order: at the
    first ``[n]`` marker of a source of that file, at the end of the text when the
    answer cites none of them."""
    first_marker: dict[int, int] = {}
    for match in _MARKER.finditer(text):
        first_marker.setdefault(int(match.group(1)), match.start())
    found: dict[str, FileCitation] = {}
    for citation in citations:
        parsed = _DOCUMENT.match(citation.document_id)
        if parsed is None:
            continue
        index = first_marker.get(citation.number, len(text))
        file_id = parsed.group("file")
        if file_id not in found or index < found[file_id].index:
            found[file_id] = FileCitation(file_id, citation.source or citation.title or file_id,
                                          index)
    return sorted(found.values(), key=lambda c: c.index)


def _last_user_text(messages: Sequence[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
