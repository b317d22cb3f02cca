"""Readers: one module per file format, each registered under its extensions.

A reader is a function ``read(data, context) -> Parsed`` (see ingest/structure.py)
that raises ``DocumentError`` for a file it cannot read. ``READERS.get(".docx")``
finds it; importing this package registers every reader.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from ingest.settings import FormatSettings
from ingest.structure import Parsed
from lorag.core.plugins import Registry


@dataclass(frozen=True)
class ReadContext:
    """What a reader may need besides the bytes: the file's name, the limits, and how
    deep inside another document (an e-mail's attachment) it is."""

    name: str
    limits: FormatSettings
    depth: int = 0

    def nested(self, name: str) -> "ReadContext":
        return replace(self, name=name, depth=self.depth + 1)


class Reader(Protocol):
    def __call__(self, data: bytes, context: ReadContext) -> Parsed:
        """The file's title and blocks; raises DocumentError."""


READERS: Registry[Parsed] = Registry("file type")


def register(*extensions: str):
    """Register a reader under each of ``extensions`` (".docx", lower case, with the dot)."""

    def decorate(reader: Reader) -> Reader:
        for extension in extensions:
            READERS.register(extension)(reader)
        return reader

    return decorate


def supported_types() -> set[str]:
    return set(READERS.names())


# Registration happens on import of each module (kept last: they import the above).
from ingest.readers import (  # noqa: E402,F401
    csv_reader, docx_reader, email_reader, epub_reader, html_reader, pdf_reader, pptx_reader,
    text_reader, xlsx_reader)
