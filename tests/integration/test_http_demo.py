"""What the README promises: ``lorag serve --demo`` on the real small model answers each
demo brand from its own tenant's documents, with citations, in the voice of its adapter;
a second start reuses everything (same keys)."""

from __future__ import annotations

import json
import re
from typing import Literal

import httpx
import openai
import pytest
from pydantic import BaseModel

from lorag.app.demo import ASSETS, QUESTIONS
from lorag.testing.server import LoragProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Verdict(BaseModel):
    answered: bool
    confidence: Literal["low", "medium", "high"]


@pytest.fixture(scope="module")
def smollm2_models_dir():
    """The prepared SmolLM2 folder's parent in the default data dir (prepared once, shared
    with ``make run`` and the benchmarks)."""
    from adapters.models import default_model_path
    from lorag.app.settings import Settings
    from lorag.core.layout import Layout

    return default_model_path(Layout(Settings().data_dir)).parent


def start(data_dir, models_dir) -> LoragProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "models").exists():
        (data_dir / "models").symlink_to(models_dir)
    return LoragProcess(data_dir, args=("--demo",), ready_timeout=1200).start()


def test_demo_brands_answer_grounded_and_cited_in_their_voice(tmp_path, smollm2_models_dir):
    manifest = json.loads((ASSETS / "demo.json").read_text())
    voices = {name: re.compile(marker.split("(.|\\n)*")[0]) for name, marker in manifest["markers"].items()}
    server = start(tmp_path / "data", smollm2_models_dir)
    try:
        keys = json.loads((tmp_path / "data" / "demo-keys.json").read_text())
        assert "curl -s" in server.log() and "from openai import OpenAI" in server.log()
        for tenant, spec in manifest["tenants"].items():
            client = openai.OpenAI(base_url=server.url + "/v1", max_retries=0, timeout=600,
                                   api_key=keys["tenants"][tenant]["api_key"])
            assert sorted(m.id for m in client.models.list()) == sorted(spec["brands"])
            for brand, brand_spec in spec["brands"].items():
                answer = client.chat.completions.create(
                    model=brand, temperature=0, max_tokens=64,
                    messages=[{"role": "user", "content": QUESTIONS[tenant]}])
                text = answer.choices[0].message.content
                citations = answer.model_extra["citations"]
                assert citations and all(c["document_id"].startswith(f"{tenant}/") for c in citations)
                voice = voices.get(brand_spec["adapter"])
                if voice is not None:
                    assert voice.match(text), (brand, text)
                else:
                    assert not any(v.match(text) for v in voices.values()), (brand, text)
        # structured output on the small model, once (the last tenant's first brand)
        parsed = client.chat.completions.parse(
            model=next(iter(spec["brands"])), messages=[{"role": "user", "content": QUESTIONS[tenant]}],
            response_format=Verdict, temperature=0, max_tokens=64)
        assert isinstance(parsed.choices[0].message.parsed, Verdict), parsed
    finally:
        assert server.stop() == 0

    again = start(tmp_path / "data", smollm2_models_dir)
    try:
        assert json.loads((tmp_path / "data" / "demo-keys.json").read_text()) == keys
        key = keys["tenants"]["acme"]["api_key"]
        assert httpx.get(again.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        again.stop()
