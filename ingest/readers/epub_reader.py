"""E-books with EbookLib: the chapters in spine order, each chapter's headings making
the section path."""

from __future__ import annotations

import io

from ingest.readers import ReadContext, register
from ingest.readers.archive import library_error, open_zip
from ingest.readers.html_reader import html_blocks, SKIP_TAGS
from ingest.structure import Block, Parsed, Sections


@register(".epub")
def read_epub(data: bytes, context: ReadContext) -> Parsed:
    open_zip(data, context, "EPUB")
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(io.BytesIO(data), {"ignore_ncx": True})
        titles = book.get_metadata("DC", "title")
        sections, blocks = Sections(), []
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or \
                    isinstance(item, epub.EpubNav):
                continue
            blocks += _chapter(item.get_content(), sections)
        return Parsed(titles[0][0] if titles else None, blocks)
    except Exception as exc:
        raise library_error("EPUB", exc) from None


def _chapter(content: bytes, sections: Sections) -> list[Block]:
    return html_blocks(content.decode("utf-8", "replace"), sections, SKIP_TAGS)
