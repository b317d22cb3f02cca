"""PDF with pdfplumber: each page's text and its tables (found from the ruling lines,
rows kept whole), with the page number as the location."""

from __future__ import annotations

import io

from ingest.readers import ReadContext, register
from ingest.structure import Block, Parsed, TableBlock, TextBlock
from ingest.types import DocumentError, FailureCode


@register(".pdf")
def read_pdf(data: bytes, context: ReadContext) -> Parsed:
    _check_not_encrypted(data)
    import pdfplumber

    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            title = (pdf.metadata or {}).get("Title")
            blocks = [block for number, page in enumerate(pdf.pages, start=1)
                      for block in _page_blocks(page, number)]
    except DocumentError:
        raise
    except Exception as exc:  # pdfminer raises many types for a damaged file
        raise DocumentError(FailureCode.INVALID_PDF, f"unreadable PDF: {type(exc).__name__}: "
                            f"{exc}") from None
    title = title.decode("utf-8", "replace") if isinstance(title, bytes) else title
    return Parsed(str(title) if title else None, blocks)


def _check_not_encrypted(data: bytes) -> None:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        locked = reader.is_encrypted and not reader.decrypt("")
    except Exception as exc:
        raise DocumentError(FailureCode.INVALID_PDF, f"unreadable PDF: {exc}") from None
    if locked:
        raise DocumentError(FailureCode.ENCRYPTED, "the PDF is password-protected")


def _page_blocks(page, number: int) -> list[Block]:
    tables = page.find_tables()
    boxes = [table.bbox for table in tables]

    def outside(obj) -> bool:
        return not any(x0 <= obj.get("x0", -1) and obj.get("x1", -1) <= x1 and
                       top <= obj.get("top", -1) and obj.get("bottom", -1) <= bottom
                       for x0, top, x1, bottom in boxes)

    text = page.filter(outside).extract_text() if boxes else page.extract_text()
    blocks: list[Block] = [TextBlock(text or "", {"page": number})]
    for table in tables:
        rows = tuple(tuple(cell or "" for cell in row) for row in table.extract())
        blocks.append(TableBlock(rows, {"page": number}))
    return blocks
