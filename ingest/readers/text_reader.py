"""Plain text, Markdown and reStructuredText: headings become the section path."""

from __future__ import annotations

import re

from ingest.readers import ReadContext, register
from ingest.structure import Block, Parsed, Sections, TableBlock, TextBlock
from ingest.types import DocumentError, FailureCode
from ingest.normalize import looks_binary

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")


def decode_text(data: bytes) -> str:
    """UTF-8 (or UTF-16 with a BOM) to str; raises DocumentError for binary or bad bytes."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(FailureCode.ENCODING, f"invalid UTF-16: {exc}") from None
    if looks_binary(data):
        raise DocumentError(FailureCode.BINARY, "the file holds binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(FailureCode.ENCODING,
                            f"not valid UTF-8 (byte {exc.start}): {exc.reason}") from None


@register(".txt", ".text")
def read_plain(data: bytes, context: ReadContext) -> Parsed:
    return Parsed(None, [TextBlock(decode_text(data))])


@register(".md", ".markdown")
def read_markdown(data: bytes, context: ReadContext) -> Parsed:
    return markdown_blocks(decode_text(data))


def markdown_blocks(text: str) -> Parsed:
    """Markdown as blocks: ATX headings open sections, pipe tables become tables, the
    rest (code fences included, kept whole) is text in its section."""
    sections, blocks, title = Sections(), [], None
    lines, i, fenced, para = text.splitlines(), 0, False, []

    def flush() -> None:
        if para:
            blocks.append(TextBlock("\n".join(para), sections.location()))
            para.clear()

    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _ATX.match(line)
        if heading:
            flush()
            sections.enter(len(heading.group(1)), heading.group(2))
            title = title or (heading.group(2).strip() if len(heading.group(1)) == 1 else None)
            para.append(line)
        elif not fenced and line.lstrip().startswith("|") and i + 1 < len(lines) \
                and _TABLE_RULE.match(lines[i + 1]):
            flush()
            i = _pipe_table(lines, i, blocks, sections)
            continue
        elif not line.strip() and not fenced:
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    return Parsed(title, blocks)


def _pipe_table(lines: list[str], i: int, blocks: list[Block], sections: Sections) -> int:
    rows = [_cells(lines[i])]
    i += 2
    while i < len(lines) and lines[i].lstrip().startswith("|"):
        rows.append(_cells(lines[i]))
        i += 1
    blocks.append(TableBlock(tuple(rows), sections.location()))
    return i


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


@register(".rst")
def read_rst(data: bytes, context: ReadContext) -> Parsed:
    """reST: a line underlined (and maybe overlined) opens a section; levels follow the
    order in which the underline characters first appear, as in docutils."""
    lines = decode_text(data).splitlines()
    sections, blocks, levels, para, title = Sections(), [], [], [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        under = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _RST_UNDERLINE.match(under) and not _RST_UNDERLINE.match(line):
            if para:
                blocks.append(TextBlock("\n".join(para), sections.location()))
                para = []
            if under[0] not in levels:
                levels.append(under[0])
            sections.enter(levels.index(under[0]) + 1, line.strip())
            title = title or line.strip()
            para = [line.strip()]
            i += 2
            continue
        if not _RST_UNDERLINE.match(line):
            para.append(line)
        i += 1
    if para:
        blocks.append(TextBlock("\n".join(para), sections.location()))
    return Parsed(title, blocks)
