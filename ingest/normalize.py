"""Text normalisation: unicode, whitespace, and garbage detection."""

from __future__ import annotations

import re
import unicodedata

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
