"""The demo set-up of ``lorag serve --demo``: the tenants, adapters, brands and corpora
that ``lorag/demo_assets/demo.json`` describes, and an API key per tenant.

Idempotent: a second start finds the tenants, adapters and brands in place, re-uses the
keys saved in ``<data_dir>/demo-keys.json`` (issuing new ones only if they no longer
work) and re-ingests the corpus, which skips every unchanged document without
embedding it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from lorag.core.errors import AuthenticationFailed
from lorag.app.container import Lorag

log = logging.getLogger(__name__)

# Package data of the installed lorag (pyproject's package-data), wherever it was installed.
ASSETS: Traversable = resources.files("lorag") / "demo_assets"
KEYS_FILE = "demo-keys.json"
# One question per demo tenant that its corpus answers.
QUESTIONS = {"acme": "How long is the warranty on Acme devices?",
             "globex": "What water temperature should I brew with?"}


@dataclass
class DemoTenant:
    id: str
    display_name: str
    api_key: str
    brands: dict[str, str | None]  # brand -> adapter (None = the base model)
    documents: int = 0


@dataclass
class Demo:
    admin_key: str
    keys_path: Path
    tenants: list[DemoTenant] = field(default_factory=list)


def ensure_demo(app: Lorag, assets: Traversable = ASSETS) -> Demo:
    """Create (or find) the demo tenants with their adapters, brands, corpus and keys.

    Raises LoragError when an asset is refused (e.g. an adapter for another base model).
    """
    manifest = json.loads((assets / "demo.json").read_text())
    keys_path = app.layout.data_dir / KEYS_FILE
    saved = _read_keys(keys_path)
    demo = Demo(saved.get("admin_key") or "lrg-admin-" + secrets.token_urlsafe(32), keys_path)
    for tenant_id, spec in manifest["tenants"].items():
        _ensure_tenant(app, tenant_id, spec)
        for name, folder in spec.get("adapters", {}).items():
            with resources.as_file(assets / folder) as path:  # a real folder to copy from
                _ensure_adapter(app, tenant_id, name, path)
        for name, brand in spec["brands"].items():
            _ensure_brand(app, tenant_id, name, brand)
        with resources.as_file(assets / spec["corpus"]) as corpus:
            report = app.documents.ingest(tenant_id, [corpus])
        log.info("demo tenant=%s corpus: %s added, %s updated, %s unchanged, %s failed", tenant_id,
                 report.added, report.updated, report.unchanged, report.failed)
        demo.tenants.append(DemoTenant(
            tenant_id, spec.get("display_name", tenant_id),
            _working_key(app, tenant_id, saved.get("tenants", {}).get(tenant_id)),
            {name: brand.get("adapter") for name, brand in spec["brands"].items()},
            app.documents.count(tenant_id)))
    _write_keys(keys_path, demo)
    return demo


def _ensure_tenant(app: Lorag, tenant_id: str, spec: dict) -> None:
    if not app.tenants.exists(tenant_id):
        app.tenants.create(tenant_id, spec.get("display_name"))


def _ensure_adapter(app: Lorag, tenant_id: str, name: str, folder: Path) -> None:
    if not app.adapters.exists(tenant_id, name):
        version = app.adapters.register(tenant_id, name, folder)
        log.info("demo tenant=%s adapter=%s registered as version %s", tenant_id, name,
                 version.version)


def _ensure_brand(app: Lorag, tenant_id: str, name: str, brand: dict) -> None:
    fields = dict(adapter=brand.get("adapter"), system_prompt=brand.get("system_prompt", ""),
                  **{k: brand.get("retrieval", {}).get(k) for k in ("top_k", "mode", "filters")})
    if any(b.name == name for b in app.brands.list(tenant_id)):
        app.brands.update(tenant_id, name, **fields)
    else:
        app.brands.create(tenant_id, name, **fields)


def _working_key(app: Lorag, tenant_id: str, saved: dict | None) -> str:
    """The saved key if it still opens this tenant, else a newly issued one."""
    key = (saved or {}).get("api_key")
    try:
        if key and app.tenants.authenticate(key) == tenant_id:
            return key
    except AuthenticationFailed:
        pass
    return app.tenants.issue_key(tenant_id).secret


def _read_keys(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_keys(path: Path, demo: Demo) -> None:
    data = {"admin_key": demo.admin_key, "tenants": {
        t.id: {"api_key": t.api_key, "brands": list(t.brands)} for t in demo.tenants}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp, 0o600)  # secrets
    os.replace(tmp, path)


def render_instructions(demo: Demo, url: str, *, show_admin_key: bool = True) -> str:
    """What ``lorag serve --demo`` prints once ready: the tenants, a curl and an openai example."""
    first = demo.tenants[0]
    voiced = next((b for b, adapter in first.brands.items() if adapter), next(iter(first.brands)))
    question = QUESTIONS.get(first.id, "What can you help me with?")
    lines = [f"lorag is ready on {url}   (API docs: {url}/docs)", "",
             f"Demo tenants (keys saved in {demo.keys_path}):"]
    for tenant in demo.tenants:
        brands = ", ".join(f"{b} ({a or 'base model'})" for b, a in tenant.brands.items())
        lines += [f"  {tenant.id}: {tenant.display_name}, {tenant.documents} documents",
                  f"    API key: {tenant.api_key}", f"    brands (models): {brands}"]
    body = json.dumps({"model": voiced, "messages": [{"role": "user", "content": question}]})
    lines += ["", "Ask with curl:", "",
              f"  curl -s {url}/v1/chat/completions \\",
              f"    -H 'Authorization: Bearer {first.api_key}' \\",
              "    -H 'Content-Type: application/json' \\",
              f"    -d '{body}'", "",
              "Or with the openai client (pip install openai):", "",
              "  from openai import OpenAI",
              f'  client = OpenAI(base_url="{url}/v1", api_key="{first.api_key}")',
              "  answer = client.chat.completions.create(",
              f'      model="{voiced}", messages=[{{"role": "user", "content": "{question}"}}])',
              "  print(answer.choices[0].message.content)",
              '  for source in answer.model_extra["citations"]:',
              "      print(source[\"number\"], source[\"title\"], source[\"document_id\"])", "",
              f"Admin key (for /admin/...): {demo.admin_key if show_admin_key else 'LORAG_SERVER__ADMIN_KEY'}",
              ""]
    return "\n".join(lines)
