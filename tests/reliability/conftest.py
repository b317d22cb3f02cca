"""Fixtures of the reliability suite, and the split between its two parts.

Tests marked ``reliability`` are the long parts (hundreds of kills, cases, requests):
they run only when asked for, ``make reliability`` (``pytest tests/reliability -m
reliability``); the rest of this folder is fast and runs in ``make test``.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    if "reliability" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="long reliability run: make reliability")
    for item in items:
        if item.get_closest_marker("reliability"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def loras(tiny_lora_factory):
    """Two valid adapters of the tiny model (read-only)."""
    return [tiny_lora_factory(seed=1), tiny_lora_factory(seed=2)]
