"""E-mail (.eml) with the standard library's ``email`` package: the headers, the body
(plain text preferred, else HTML), and every attachment of a type lorag reads, each in
its own section ("Attachment: prices.xlsx > ...")."""

from __future__ import annotations

import email
import logging
from email import policy
from email.message import EmailMessage
from pathlib import PurePath

from ingest.readers import READERS, ReadContext, register
from ingest.readers.html_reader import SKIP_TAGS, html_blocks
from ingest.structure import Block, Parsed, Sections, TableBlock, TextBlock
from ingest.types import DocumentError, FailureCode, LocationKey
from lorag.core.errors import UnknownName

log = logging.getLogger(__name__)

_HEADERS = ("From", "To", "Cc", "Date", "Subject")


@register(".eml")
def read_eml(data: bytes, context: ReadContext) -> Parsed:
    try:
        message = email.message_from_bytes(data, policy=policy.default)
    except Exception as exc:
        raise DocumentError(FailureCode.INVALID_DOCUMENT, f"not a valid e-mail: {exc}") from None
    if not isinstance(message, EmailMessage) or not any(message.get(h) for h in _HEADERS):
        raise DocumentError(FailureCode.INVALID_DOCUMENT, "not an e-mail: no From, To, Date "
                            "or Subject header")
    subject = str(message.get("Subject", "")).strip() or None
    head = "\n".join(f"{name}: {message[name]}" for name in _HEADERS if message.get(name))
    blocks: list[Block] = [TextBlock(head), *_body(message)]
    for part in message.iter_attachments():
        blocks += _attachment(part, context)
    return Parsed(subject, blocks)


def _body(message: EmailMessage) -> list[Block]:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return []
    content = body.get_content()
    if body.get_content_subtype() == "html":
        return html_blocks(content, Sections(), SKIP_TAGS)
    return [TextBlock(content)]


def _attachment(part: EmailMessage, context: ReadContext) -> list[Block]:
    name = PurePath(part.get_filename() or "").name
    extension = PurePath(name).suffix.lower()
    if not name or context.depth >= context.limits.max_attachment_depth:
        return []
    try:
        reader = READERS.get(extension)
        payload = part.get_payload(decode=True) or b""
        parsed = reader(payload, context.nested(name))
    except (UnknownName, DocumentError) as exc:
        log.info("attachment %r of %s not read: %s", name, context.name, exc)
        return []
    return [_under(block, f"Attachment: {name}") for block in parsed.blocks]


def _under(block: Block, heading: str) -> Block:
    key = LocationKey.SECTION.value
    inner = block.location.get(key)
    location = {**block.location, key: f"{heading} > {inner}" if inner else heading}
    if isinstance(block, TableBlock):
        return TableBlock(block.rows, location)
    return TextBlock(block.text, location)
