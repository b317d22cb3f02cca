"""Feedback on stored answers: one rating each, given once.

``POST /v1/chat/completions/{id}/feedback`` answers 201 for a new rating, 200 when the
same rating (comment, tags) is sent again, 409 for an attempt to change it. Ratings
count in the readout of the target and version that gave the answer, and -1 ratings
feed the canary test (``lorag.app.rollouts``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from server.deps import Lorag, TenantId
from server.feedback import schemas

router = APIRouter(tags=["feedback"])


@router.post("/v1/chat/completions/{completion_id}/feedback", response_model=schemas.Feedback,
             status_code=status.HTTP_201_CREATED,
             responses={200: {"model": schemas.Feedback, "description": "The same rating again."},
                        **schemas.error_responses(400, 401, 404, 409, 413)},
             summary="Rate a stored answer (+1 / -1, comment, tags)")
def rate_answer(completion_id: str, body: schemas.FeedbackCreate, response: Response,
                tenant: TenantId, lorag: Lorag) -> schemas.Feedback:
    feedback, created = lorag.rollouts.rate(tenant, completion_id, body.rating, body.comment,
                                            body.tags)
    if not created:
        response.status_code = status.HTTP_200_OK
    return schemas.Feedback(**feedback.to_dict())


@router.get("/v1/chat/completions/{completion_id}/feedback", response_model=schemas.Feedback,
            responses=schemas.error_responses(401, 404), summary="A stored answer's rating")
def get_feedback(completion_id: str, tenant: TenantId, lorag: Lorag) -> schemas.Feedback:
    return schemas.Feedback(**lorag.answers.feedback(tenant, completion_id).to_dict())
