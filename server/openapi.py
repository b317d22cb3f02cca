"""The OpenAPI document: FastAPI's, with validation errors as the 400s they are (not
422s) and the bodies that routes parse themselves."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from server.documents.schemas import DocumentsCreate

# Bodies a route parses itself (it takes more than one content type); listed so that the
# OpenAPI document still describes them.
EXTRA_OPENAPI_MODELS = [DocumentsCreate]


def openapi(app: FastAPI) -> dict:
    """``app``'s document, built once and cached on the app."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
        error = {"description": "Bad Request", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        for operation in (op for path in document["paths"].values() for op in path.values()):
            if operation["responses"].pop("422", None) is not None:
                operation["responses"].setdefault("400", error)
        components = document["components"]["schemas"]
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        _, extra = models_json_schema([(m, "validation") for m in EXTRA_OPENAPI_MODELS],
                                      ref_template="#/components/schemas/{model}")
        components.update(extra["$defs"])
        app.openapi_schema = document
    return app.openapi_schema
