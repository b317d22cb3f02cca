"""Schemathesis over lorag's own OpenAPI document, and a snapshot of what a hostile
request must not change.

``run_schemathesis`` draws cases for every operation (positive and negative data),
sends them with a valid key (the admin key for /admin, a tenant's for /v1), and checks
each response: no 5xx, the body matches the documented schema, the content type and
status code are documented, and (negative data) invalid input is refused. Failures
are collected, not raised at the first one, so a run reports how many cases failed.
"""

from __future__ import annotations

import collections
import hashlib
import os
from pathlib import Path
from typing import Callable, Iterator

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance,
                                               status_code_conformance)

POSITIVE_CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance,
                   status_code_conformance]
NEGATIVE_CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance,
                   negative_data_rejection]
# Admin operations that would start unbounded work (training) or remove the tenant every
# other case needs: their tenant stays random (so mostly 404), the rest act on TENANT.
UNPINNED = {("POST", "/admin/tenants/{tenant}/training"), ("DELETE", "/admin/tenants/{tenant}")}
TENANT = "acme"
# Every case carries a valid key (the auth matrix is tested on its own); unknown query
# parameters are ignored, as OpenAI's API does, so are not negative data here.
CONFIG = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False,
                                                       "with-security-parameters": False}})


def run_schemathesis(schema, *, cases_per_operation: int, headers: Callable[[str], dict],
                     restore: Callable[[], None], call: Callable = None, seed: int = 0) -> dict:
    """Run the cases; ``headers(path)`` gives the auth headers, ``restore()`` puts back
    the tenant and key a case may have removed. Returns the figures (and failures)."""
    figures = {"operations": 0, "operations_without_negative_data": 0, "cases": 0,
               "failures": 0, "status": collections.Counter(),
               "failure_examples": []}
    for result in schema.get_all_operations():
        operation = result.ok()
        figures["operations"] += 1
        pinned = {}
        if "{tenant}" in operation.path and (operation.method.upper(), operation.path) not in UNPINNED:
            pinned = {"tenant": TENANT}
        for mode, checks in ((GenerationMode.POSITIVE, POSITIVE_CHECKS),
                             (GenerationMode.NEGATIVE, NEGATIVE_CHECKS)):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned or None)

            @settings(max_examples=cases_per_operation, deadline=None, database=None,
                      derandomize=True, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(strategy)
            def one(case):
                response = case.call(headers=headers(operation.path))
                figures["cases"] += 1
                figures["status"][str(response.status_code)] += 1
                try:
                    case.validate_response(response, checks=checks,
                                           headers=headers(operation.path))
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - counted
                    figures["failures"] += 1
                    if len(figures["failure_examples"]) < 20:
                        figures["failure_examples"].append(
                            f"{operation.method.upper()} {operation.path} [{mode.value}] -> "
                            f"{response.status_code}: {str(exc)[:600]}")
                restore()

            try:
                one()
            except Unsatisfiable:  # nothing to negate (no parameters, no body)
                figures["operations_without_negative_data"] += 1
    figures["status"] = dict(sorted(figures["status"].items()))
    return figures


def data_snapshot(app) -> dict:
    """What hostile requests must leave unchanged: per tenant the documents (ids and
    content hashes) and chunk count, adapter versions, brands; and every file under the
    adapter store (staging excluded: it is emptied as each request ends)."""
    snapshot = {}
    for tenant in app.tenants.list():
        store = app.retrieval.tenant_index(tenant.id).store
        snapshot[tenant.id] = {
            "documents": store.document_hashes(), "chunks": store.counts()[1],
            "adapters": [(v.name, v.version, v.id) for v in app.adapters.list(tenant.id)],
            "brands": [b.to_dict() for b in app.brands.list(tenant.id)]}
    root = app.layout.adapters_dir
    snapshot["adapter_files"] = sorted(
        (str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in walk(root, skip=root / ".staging") if p.is_file())
    snapshot["staging"] = sorted(str(p) for p in walk(root / ".staging"))
    return snapshot


def files_outside(root: Path, data_dir: Path) -> set[str]:
    """Every file and folder under ``root`` that is not under ``data_dir``. The data
    directory is never entered: the server removes folders there in the background."""
    return {str(p) for p in walk(root, skip=data_dir)}


def walk(root: Path, skip: Path | None = None) -> Iterator[Path]:
    """Every path under ``root`` (none if it is missing), without entering ``skip``.
    Folders that vanish while walked (other tests' temporary files, removed
    concurrently) are passed over, not an error."""
    for folder, dirs, files in os.walk(root, onerror=lambda error: None):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        yield from (Path(folder, name) for name in (*dirs, *files))
