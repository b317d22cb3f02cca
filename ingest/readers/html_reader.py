"""HTML: the main content (trafilatura drops navigation, footers, cookie banners and
other boilerplate), then headings, paragraphs, lists and tables as blocks."""

from __future__ import annotations

import functools
import logging

import lxml.html
from lxml import etree

from ingest.readers import ReadContext, register
from ingest.readers.text_reader import decode_text
from ingest.structure import Block, Parsed, Sections, TableBlock, TextBlock
from ingest.types import DocumentError, FailureCode

log = logging.getLogger(__name__)

HEADINGS = {f"h{n}": n for n in range(1, 7)}
SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object",
         "title", "meta", "link"}
# Skipped as well when trafilatura found no main content and the whole page is read.
_BOILERPLATE = SKIP_TAGS | {"nav", "footer", "header", "aside", "form", "button", "dialog"}
_BLOCK = {"p", "div", "section", "article", "main", "ul", "ol", "li", "dl", "dt", "dd",
          "blockquote", "figure", "figcaption", "address", "details", "summary", "hr", "br",
          "caption", "body", "tr"}


@register(".html", ".htm", ".xhtml")
def read_html(data: bytes, context: ReadContext) -> Parsed:
    return main_content(decode_text(data))


def main_content(html: str, **location) -> Parsed:
    """The page's title and the blocks of its main content; raises DocumentError."""
    import trafilatura

    title = page_title(html)
    try:
        main = trafilatura.extract(html, output_format="html", include_tables=True,
                                   include_comments=False, include_images=False,
                                   include_links=False, deduplicate=False, config=_config())
    except (ValueError, etree.LxmlError, RecursionError) as exc:
        log.info("main-content extraction failed, reading the whole page: %s", exc)
        main = None
    if main:
        return Parsed(title, html_blocks(main, Sections(), SKIP_TAGS, **location))
    return Parsed(title, html_blocks(html, Sections(), _BOILERPLATE, **location))


@functools.cache
def _config():
    """trafilatura's settings, but short pages keep their structure: by default a main
    content under 250 characters is replaced by a flat run of all the page's text."""
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "1")
    return config


def page_title(html: str) -> str | None:
    root = parse_html(html)
    found = root.find(".//title") if root is not None else None
    return " ".join(found.text_content().split()) or None if found is not None else None


def parse_html(html: str):
    """The lxml tree of ``html`` (None for a page without elements)."""
    try:
        return lxml.html.document_fromstring(html.encode("utf-8"),
                                             parser=lxml.html.HTMLParser(encoding="utf-8"))
    except (etree.ParserError, ValueError):
        return None


class _Paragraphs:
    """Text gathered between block boundaries."""

    def __init__(self, blocks: list[Block], sections: Sections, location: dict):
        self.blocks, self.sections, self.location, self.words = blocks, sections, location, []

    def add(self, text: str | None) -> None:
        if text and text.strip():
            self.words.append(text)

    def flush(self) -> None:
        text = " ".join("".join(self.words).split())
        if text:
            self.blocks.append(TextBlock(text, self.sections.location(**self.location)))
        self.words = []


def html_blocks(html: str, sections: Sections, skip: set[str], **location) -> list[Block]:
    """Blocks of an HTML text in reading order (headings enter ``sections``). The walk
    is iterative: deeply nested markup cannot exhaust the stack."""
    root = parse_html(html)
    blocks: list[Block] = []
    if root is None:
        return blocks
    out = _Paragraphs(blocks, sections, location)
    stack = [(root, True)]
    while stack:
        element, entering = stack.pop()
        tag = element.tag if isinstance(element.tag, str) else ""
        if not entering:
            if tag in _BLOCK:
                out.flush()
            out.add(element.tail)
            continue
        if not tag or tag in skip:  # a comment, or markup that is not text
            out.add(element.tail)
            continue
        if tag in HEADINGS or tag == "table" or tag == "pre":
            out.flush()
            _leaf(element, tag, out, sections, location)
            out.add(element.tail)
            continue
        if tag in _BLOCK:
            out.flush()
        out.add(element.text)
        stack.append((element, False))
        stack.extend((child, True) for child in reversed(element))
    out.flush()
    return blocks


def _leaf(element, tag: str, out: _Paragraphs, sections: Sections, location: dict) -> None:
    """A heading (enters the section path), a table or a <pre>: read whole."""
    if tag in HEADINGS:
        heading = " ".join(element.text_content().split())
        sections.enter(HEADINGS[tag], heading)
        if heading:
            out.blocks.append(TextBlock(heading, sections.location(**location)))
    elif tag == "table":
        rows = tuple(tuple(cell.text_content() for cell in row.xpath("./th|./td"))
                     for row in element.iter("tr"))
        if rows:
            out.blocks.append(TableBlock(rows, sections.location(**location)))
    else:
        out.blocks.append(TextBlock(element.text_content(), sections.location(**location)))
