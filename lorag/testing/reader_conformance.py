"""The conformance suite of the Reader Protocol (ingest/readers): every registered file
type reads a valid sample into blocks with text, and fails on damaged or foreign bytes
with a DocumentError only (a reader's other exceptions would be reported as reader bugs).

    for extension in READERS.names():
        check_reader(extension)
"""

from __future__ import annotations

import random

from ingest.readers import READERS, ReadContext
from ingest.settings import FormatSettings
from ingest.structure import assemble
from ingest.types import DocumentError
from lorag.testing.documents import FIXTURES

_TEXT = "# Title\n\nA sentence about lighthouses.\n"
_HTML = ("<html><head><title>T</title></head><body><main><h1>Title</h1><p>A sentence about "
         "lighthouses.</p></main></body></html>")
SAMPLES: dict[str, bytes] = {
    ".txt": _TEXT.encode(), ".text": _TEXT.encode(), ".md": _TEXT.encode(),
    ".markdown": _TEXT.encode(), ".rst": b"Title\n=====\n\nA sentence about lighthouses.\n",
    ".html": _HTML.encode(), ".htm": _HTML.encode(), ".xhtml": _HTML.encode()}


def sample(extension: str) -> bytes:
    """A valid file of this type (the format fixtures of lorag.testing.documents)."""
    for name, (make, _) in FIXTURES.items():
        if name.endswith(extension):
            return make()
    return SAMPLES[extension]


def damaged(data: bytes) -> list[bytes]:
    """Bytes a reader of this type must refuse or read without crashing."""
    rng = random.Random(len(data))
    noise = bytes(rng.randrange(256) for _ in range(2048))
    flipped = bytearray(data)
    for i in rng.sample(range(len(flipped)), k=min(64, len(flipped))):
        flipped[i] ^= 0xFF
    return [b"", noise, data[: len(data) // 2], bytes(flipped), b"PK\x03\x04" + noise]


def check_reader(extension: str) -> None:
    """Raises AssertionError when the reader of ``extension`` breaks the Protocol."""
    reader = READERS.get(extension)
    context = ReadContext(f"sample{extension}", FormatSettings())
    text, _ = assemble(reader(sample(extension), context).blocks)
    assert text.strip(), f"{extension}: the sample read to no text"
    for number, data in enumerate(damaged(sample(extension))):
        try:
            reader(data, context)
        except DocumentError as exc:
            assert exc.code and exc.message, f"{extension}: damaged #{number}: an empty error"
        except Exception as exc:  # noqa: BLE001 - the point of the check
            raise AssertionError(f"{extension}: damaged input #{number} raised "
                                 f"{type(exc).__name__}: {exc}") from exc
