"""Every registered InferenceEngine runs the engine conformance suite somewhere.

Embedders and vector indexes get theirs by iterating their registries
(test_conformance_embedders.py, test_conformance_vector_indexes.py). Engines are slow to
start, so each runs the suite in its own integration module (once, beside its own tests);
this check reads those modules, without importing them, and fails when a registered
backend has no test class mixing in EngineConformance that starts it.
"""

import ast
from pathlib import Path

from adapters.engines import ENGINES

TESTS = Path(__file__).resolve().parents[1]


def _mixes_in_engine_conformance(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ClassDef)
               and any(getattr(base, "id", None) == "EngineConformance" for base in node.bases)
               for node in ast.walk(tree))


def _started_backends(tree: ast.Module) -> set[str]:
    """First arguments of ``start_stack("<backend>", ...)`` calls."""
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "start_stack"
            and node.args and isinstance(node.args[0], ast.Constant)}


def engines_under_conformance() -> set[str]:
    covered: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        if _mixes_in_engine_conformance(tree):
            covered |= _started_backends(tree)
    return covered


def test_every_registered_engine_runs_the_conformance_suite():
    missing = set(ENGINES.names()) - engines_under_conformance()
    assert not missing, (f"engines without a conformance run: {sorted(missing)}; add a test "
                         "class mixing in lorag.testing.engine_conformance.EngineConformance")
