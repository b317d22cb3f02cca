"""Word documents with python-docx: paragraphs and tables in document order; heading
styles ("Heading 1".."Heading 9", "Title") make the section path."""

from __future__ import annotations

import io
import re

from ingest.readers import ReadContext, register
from ingest.readers.archive import library_error, open_zip, refuse_ole
from ingest.structure import Block, Parsed, Sections, TableBlock, TextBlock

_HEADING = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


@register(".docx")
def read_docx(data: bytes, context: ReadContext) -> Parsed:
    refuse_ole(data, "DOCX")
    open_zip(data, context, "DOCX")
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        return Parsed(document.core_properties.title or None, _blocks(document))
    except Exception as exc:
        raise library_error("DOCX", exc) from None


def _blocks(document) -> list[Block]:
    sections, blocks = Sections(), []
    for item in document.iter_inner_content():
        if hasattr(item, "rows"):
            rows = tuple(tuple(cell.text for cell in row.cells) for row in item.rows)
            blocks.append(TableBlock(rows, sections.location()))
            continue
        level = _level(item.style.name if item.style is not None else "")
        if level is not None:
            sections.enter(level, item.text)
        blocks.append(TextBlock(item.text, sections.location()))
    return blocks


def _level(style: str) -> int | None:
    if style.lower() == "title":
        return 1
    match = _HEADING.match(style)
    return int(match.group(1)) if match else None
