"""The PEFT reference engine passes the engine conformance table."""

import pytest

from lorag.testing.engine_conformance import EngineConformance, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kit(tmp_path_factory, tiny_model, tiny_lora_factory):
    stack = start_stack("peft", tmp_path_factory.mktemp("peft") / "data", tiny_model,
                        tiny_lora_factory)
    yield stack.kit
    stack.close()


class TestPeftEngine(EngineConformance):
    pass
