"""Text normalisation: unicode, whitespace, HTML to text, and garbage detection."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

# C0/C1 control characters (but tab and newline), and invisible format characters
# that only get in the way of matching (soft hyphen, zero-width spaces, BOM).
_DROP = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127, *range(128, 160)]}
_DROP.update({c: None for c in (0x00AD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)})
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFKC, one newline style, no control characters, single spaces inside lines, line
    indentation kept (code stays readable; tabs become 4 spaces), at most one blank line
    in a row (paragraph breaks survive), no blank start or end."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.translate(_DROP)
    lines = [_normalize_line(line) for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n").rstrip()


def _normalize_line(line: str) -> str:
    body = line.lstrip()
    if not body:
        return ""
    indent = line[:len(line) - len(body)].replace("\t", "    ")
    return " " * len(indent) + _SPACES.sub(" ", body).rstrip()


def looks_binary(data: bytes) -> bool:
    """True for bytes that are not text: a NUL, or many control bytes, in the first 8 KiB."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and controls / len(head) > 0.05


def looks_garbled(text: str) -> bool:
    """True for a string (given as an object) that is mostly control characters or NULs."""
    head = text[:8192]
    controls = sum(1 for ch in head if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
    return "\x00" in head or (bool(head) and controls / len(head) > 0.05)


# --- HTML ------------------------------------------------------------------------------

_SKIP = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object"}
_BLOCK = {"p", "div", "section", "article", "header", "footer", "nav", "aside", "main",
          "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "pre", "blockquote",
          "figure", "form", "hr", "address", "details", "summary"}
_LINE = {"br", "li", "dt", "dd", "tr", "caption", "figcaption"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed",
         "source", "track", "wbr"}


# Our own breaks, kept apart from source newlines (only <pre> keeps those).
_PARAGRAPH, _LINEBREAK, _PRE_NEWLINE = "\x1e", "\x1f", "\x1d"


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP and tag not in _VOID:
            self._skip_depth += 1
        elif tag == "pre":
            self._pre_depth += 1
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP and self._skip_depth:
            self._skip_depth -= 1
        elif tag == "pre" and self._pre_depth:
            self._pre_depth -= 1
        self._break(tag, end=True)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip_depth:
            # Outside <pre>, a source newline is only wrapping.
            self.parts.append(data.replace("\n", _PRE_NEWLINE if self._pre_depth else " "))

    def _break(self, tag: str, end: bool = False) -> None:
        if tag in _BLOCK:
            self.parts.append(_PARAGRAPH)
        elif tag in _LINE and not end:
            self.parts.append(_LINEBREAK)


def html_to_text(html: str) -> tuple[str | None, str]:
    """(title, text) of an HTML page: scripts, styles and the head dropped, block
    elements turned into paragraph breaks, line elements (br, li, tr) into newlines.
    The text still needs ``normalize_text``."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    title = normalize_text("".join(parser.title_parts)) or None
    body = "".join(parser.parts).replace(_PARAGRAPH, "\n\n").replace(_LINEBREAK, "\n")
    body = re.sub(r"\n[ \t]+", "\n", body)  # markup indentation is not the text's
    return title, body.replace(_PRE_NEWLINE, "\n")
