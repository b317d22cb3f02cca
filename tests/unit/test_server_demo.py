"""``lorag serve --demo``'s set-up: everything in the manifest exists after one run, and
a second run re-uses it all (same keys, no new adapter versions, nothing re-embedded)."""

from __future__ import annotations

import json
import shutil
import stat

import pytest

from lorag.app.demo import ensure_demo, render_instructions
from lorag.app.container import Lorag
from lorag.testing.settings import fast_settings


@pytest.fixture
def assets(tmp_path, tiny_lora_factory):
    root = tmp_path / "assets"
    shutil.copytree(tiny_lora_factory(seed=1), root / "adapters" / "voice")
    for tenant, docs in {"acme": {"a.md": "# Warranty\n\nTwo years on every device."},
                         "globex": {"b.md": "# Brewing\n\nUse water at 94 degrees."}}.items():
        (root / "corpus" / tenant).mkdir(parents=True)
        for name, text in docs.items():
            (root / "corpus" / tenant / name).write_text(text)
    (root / "demo.json").write_text(json.dumps({"tenants": {
        "acme": {"display_name": "Acme", "corpus": "corpus/acme",
                 "adapters": {"voice": "adapters/voice"},
                 "brands": {"acme-voice": {"adapter": "voice", "system_prompt": "Be Acme."},
                            "acme-plain": {"adapter": None, "system_prompt": "Be Acme."}}},
        "globex": {"corpus": "corpus/globex",
                   "brands": {"globex-support": {"adapter": None, "system_prompt": "Be Globex.",
                                                 "retrieval": {"mode": "lexical", "top_k": 2}}}}}}))
    return root


@pytest.fixture
def container(tmp_path, tiny_model):
    settings = fast_settings(tmp_path / "data")
    settings.engine.model = str(tiny_model)
    app = Lorag(settings)
    yield app
    app.close()


def test_demo_sets_up_the_manifest_and_a_second_run_reuses_it(container, assets):
    first = ensure_demo(container, assets)
    assert [t.id for t in first.tenants] == ["acme", "globex"]
    acme, globex = first.tenants
    assert container.tenants.authenticate(acme.api_key) == "acme"
    assert container.tenants.authenticate(globex.api_key) == "globex"
    assert container.brands.get("acme", "acme-voice").adapter_name == "voice"
    assert container.brands.get("globex", "globex-support").mode == "lexical"
    assert [d.id for d in container.documents.list("acme")] == ["acme/a.md"]
    assert acme.documents == 1 and globex.documents == 1
    keys_file = container.layout.data_dir / "demo-keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    embedded = container.embedder.calls  # the fake embedder counts its calls

    second = ensure_demo(container, assets)
    assert [t.api_key for t in second.tenants] == [acme.api_key, globex.api_key]
    assert second.admin_key == first.admin_key
    assert [v.version for v in container.adapters.list("acme")] == [1]
    assert len(container.tenants.list_keys("acme")) == 1
    assert container.embedder.calls == embedded  # unchanged documents are not embedded


def test_a_key_that_stopped_working_is_replaced(container, assets):
    first = ensure_demo(container, assets)
    key_id = container.tenants.list_keys("acme")[0]["id"]
    container.tenants.revoke_key("acme", key_id)
    second = ensure_demo(container, assets)
    assert second.tenants[0].api_key != first.tenants[0].api_key
    assert container.tenants.authenticate(second.tenants[0].api_key) == "acme"
    saved = json.loads((container.layout.data_dir / "demo-keys.json").read_text())
    assert saved["tenants"]["acme"]["api_key"] == second.tenants[0].api_key


def test_instructions_show_a_working_curl_and_openai_example(container, assets):
    demo = ensure_demo(container, assets)
    text = render_instructions(demo, "http://127.0.0.1:8000")
    key = demo.tenants[0].api_key
    assert f"-H 'Authorization: Bearer {key}'" in text
    assert "curl -s http://127.0.0.1:8000/v1/chat/completions" in text
    assert '"model": "acme-voice"' in text  # a brand with an adapter
    assert f'OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="{key}")' in text
    assert demo.admin_key in text
    assert demo.admin_key not in render_instructions(demo, "http://x", show_admin_key=False)
