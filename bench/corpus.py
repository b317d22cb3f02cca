"""Benchmark inputs: a real document corpus and real queries, made the same way every run.

The corpus is the Python 3.11 documentation (reStructuredText sources, PSF licence)
from Debian's ``python3.11-doc`` package, fetched with ``apt-get download`` (no
install) and cached under ``.cache/bench/``. Where apt is not reachable, the
repository's own Markdown and docstrings stand in (the result notes say which).
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import REPO_DIR

CACHE = REPO_DIR / ".cache" / "bench"
PACKAGE = "python3.11-doc"
SOURCES = "usr/share/doc/python3.11/html/_sources"


def python_docs() -> Path | None:
    """The folder of the documentation's ``.rst.txt`` files (497 files), or None when
    the Debian package cannot be downloaded here."""
    target = CACHE / PACKAGE
    if (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        try:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True,
                           capture_output=True, timeout=300)
            deb = next(Path(tmp).glob(f"{PACKAGE}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True, timeout=300)
        except (OSError, subprocess.SubprocessError, StopIteration):
            return None
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(f"{tmp}/x/{SOURCES}", target)
    (target / ".complete").touch()
    return target


def corpus_files(max_files: int | None = None) -> tuple[list[Path], str]:
    """The corpus as a sorted list of text files (the first ``max_files`` by size rank
    spread over the whole set) and its description."""
    root = python_docs()
    if root is not None:
        files, name = sorted(root.rglob("*.txt")), "Python 3.11 documentation (python3.11-doc)"
    else:
        files = sorted(p for p in REPO_DIR.rglob("*.md") if ".venv" not in p.parts)
        name = "lorag's own Markdown files (python3.11-doc not downloadable)"
    if max_files is not None and len(files) > max_files:
        step = len(files) / max_files
        files = [files[int(i * step)] for i in range(max_files)]
    return files, name


def copy_corpus(files: list[Path], dest: Path) -> Path:
    """Copy ``files`` flat into ``dest`` (as ``NNNN-name.txt``): identical input folders
    for lorag and its baselines."""
    dest.mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(files):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name)
        if not name.endswith(".txt"):
            name += ".txt"
        shutil.copyfile(path, dest / f"{number:04d}-{name}")
    return dest


def corpus_words(files: list[Path]) -> int:
    return sum(len(p.read_text(errors="replace").split()) for p in files)


QUESTION_TEMPLATES = ("how do I {} in python", "what does {} do", "{} example",
                      "difference between {} and {}", "why does {} raise an error")


def queries(n: int, seed: int = 0) -> list[str]:
    """``n`` short search queries built from identifiers and words of the corpus
    (deterministic), the kind a user types into a documentation search."""
    files, _ = corpus_files()
    vocabulary = sorted({w for p in files[:200] for w in
                         re.findall(r"\b[a-z_][a-z_]{3,20}\b", p.read_text(errors="replace"))})
    rng = random.Random(seed)
    found = []
    for _ in range(n):
        template = rng.choice(QUESTION_TEMPLATES)
        words = [rng.choice(vocabulary) for _ in range(template.count("{}"))]
        found.append(template.format(*words))
    return found


def fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha1()
    for path in files:
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:12]
