"""The layering of the README's "Layout" is a contract that import-linter checks
(``[tool.importlinter]`` in pyproject.toml): breaking it fails the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("lorag", "server", "retrieval", "adapters", "ingest")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the packages under ``root`` (its working directory comes first on
    the import path, so a copy is analysed, not the installed checkout)."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_every_layering_contract():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


@pytest.fixture
def scratch_tree(tmp_path) -> Path:
    """A copy of the packages and the contract, to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "demo_assets"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("module, violation, contract", [
    ("lorag/core/errors.py", "import lorag.app.container", "The ground imports nothing"),
    ("retrieval/fusion.py", "import adapters.store", "One way down"),
    ("adapters/validation.py", "import lorag.app.settings", "Domains never import"),
    ("server/errors.py", "import retrieval.store", "server/ is HTTP only"),
])
def test_an_import_against_the_layers_fails(scratch_tree, module, violation, contract):
    path = scratch_tree / module
    path.write_text(path.read_text() + f"\n{violation}  # deliberate violation\n")
    done = lint_imports(scratch_tree)
    importer = module.removesuffix(".py").replace("/", ".")
    imported = violation.removeprefix("import ")
    assert done.returncode != 0
    assert f"{contract}" in done.stdout and f"{importer} -> {imported}" in done.stdout
