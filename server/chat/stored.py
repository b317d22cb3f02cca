"""OpenAI's stored chat completions: list, retrieve, update metadata, messages, delete.

Answers are stored by ``store: true`` on a chat request (or a brand's default); the
official client's ``chat.completions.list / retrieve / update / delete`` and
``chat.completions.messages.list`` use these routes unchanged. A tenant sees only its
own answers; shadow answers are never listed or returned here.
"""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Query, Request

from lorag.core.answers import StoredAnswer
from lorag.core.errors import InvalidInput
from server.chat import schemas
from server.deps import Lorag, TenantId
from server.schemas import Deleted

router = APIRouter(tags=["chat"])
_METADATA_PARAM = re.compile(r"^metadata\[(.{1,64})\]$")


def to_stored(answer: StoredAnswer) -> schemas.StoredCompletion:
    return schemas.StoredCompletion(**answer.completion, metadata=answer.metadata,
                                    provenance=answer.provenance)


def metadata_filters(request: Request) -> dict[str, str]:
    """``metadata[key]=value`` query parameters (OpenAI's deep-object form)."""
    filters = {}
    for name, value in request.query_params.multi_items():
        match = _METADATA_PARAM.match(name)
        if match:
            filters[match.group(1)] = value
        elif name.startswith("metadata"):
            raise InvalidInput("filter by metadata as metadata[key]=value", param=name)
    return filters


@router.get("/v1/chat/completions", response_model=schemas.StoredCompletionList,
            responses=schemas.error_responses(400, 401, 404),
            summary="The tenant's stored answers (filter by model and metadata[key]=value)")
def list_stored_completions(
        request: Request, tenant: TenantId, lorag: Lorag,
        model: str | None = Query(None, max_length=200, description="Only this brand's."),
        after: str | None = Query(None, max_length=200, description="The last id of the "
                                  "previous page."),
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "asc") -> schemas.StoredCompletionList:
    answers, more = lorag.answers.list(tenant, brand=model, metadata=metadata_filters(request),
                                       after=after, limit=limit, descending=order == "desc")
    data = [to_stored(a) for a in answers]
    return schemas.StoredCompletionList(data=data, first_id=data[0].id if data else None,
                                        last_id=data[-1].id if data else None, has_more=more)


@router.get("/v1/chat/completions/{completion_id}", response_model=schemas.StoredCompletion,
            responses=schemas.error_responses(401, 404), summary="One stored answer")
def get_stored_completion(completion_id: str, tenant: TenantId,
                          lorag: Lorag) -> schemas.StoredCompletion:
    return to_stored(lorag.answers.get(tenant, completion_id))


@router.post("/v1/chat/completions/{completion_id}", response_model=schemas.StoredCompletion,
             responses=schemas.error_responses(400, 401, 404, 413),
             summary="Replace a stored answer's metadata")
def update_stored_completion(completion_id: str, body: schemas.MetadataUpdate, tenant: TenantId,
                             lorag: Lorag) -> schemas.StoredCompletion:
    return to_stored(lorag.answers.update_metadata(tenant, completion_id, body.metadata or {}))


@router.get("/v1/chat/completions/{completion_id}/messages",
            response_model=schemas.StoredMessageList,
            responses=schemas.error_responses(400, 401, 404),
            summary="The messages a stored answer was asked with")
def list_stored_messages(completion_id: str, tenant: TenantId, lorag: Lorag,
                         after: str | None = Query(None, max_length=300),
                         limit: int = Query(20, ge=1, le=100),
                         order: Literal["asc", "desc"] = "asc") -> schemas.StoredMessageList:
    answer = lorag.answers.get(tenant, completion_id)
    messages = [schemas.StoredMessage(id=f"{completion_id}-{i}", role=m["role"],
                                      content=m["content"], name=m.get("name"))
                for i, m in enumerate(answer.messages)]
    if order == "desc":
        messages.reverse()
    if after is not None:
        ids = [m.id for m in messages]
        if after not in ids:
            raise InvalidInput(f"no message {after!r} in this answer", param="after")
        messages = messages[ids.index(after) + 1:]
    page = messages[:limit]
    return schemas.StoredMessageList(data=page, first_id=page[0].id if page else None,
                                     last_id=page[-1].id if page else None,
                                     has_more=len(messages) > limit)


@router.delete("/v1/chat/completions/{completion_id}", response_model=Deleted,
               responses=schemas.error_responses(401, 404),
               summary="Delete a stored answer (with its feedback and shadow answers)")
def delete_stored_completion(completion_id: str, tenant: TenantId, lorag: Lorag) -> Deleted:
    lorag.answers.delete(tenant, completion_id)
    return Deleted(id=completion_id, object="chat.completion.deleted")
