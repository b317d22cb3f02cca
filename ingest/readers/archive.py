"""Zip-based formats (DOCX, PPTX, XLSX, EPUB): refuse bombs before any library unpacks."""

from __future__ import annotations

import io
import zipfile

from ingest.readers import ReadContext
from ingest.types import DocumentError, FailureCode

_BOMB_FLOOR = 2**20  # a member under 1 MiB unpacked is never a bomb, however compressed


def open_zip(data: bytes, context: ReadContext, kind: str) -> zipfile.ZipFile:
    """The archive, checked: raises DocumentError (INVALID_DOCUMENT for a file that is
    not a zip, ARCHIVE_BOMB for one that unpacks too large or too compressed).

    zipfile never returns more bytes than a member's declared size, so checking the
    declared sizes bounds what the format's library can unpack."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise DocumentError(FailureCode.INVALID_DOCUMENT, f"not a valid {kind} file: {exc}") from None
    limits = context.limits
    total = 0
    for info in archive.infolist():
        total += info.file_size
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > _BOMB_FLOOR and ratio > limits.max_compression_ratio:
            raise DocumentError(FailureCode.ARCHIVE_BOMB, f"{kind} member {info.filename!r} "
                                f"unpacks {ratio:.0f} times its size (limit "
                                f"{limits.max_compression_ratio:.0f}): a zip bomb?")
        if info.flag_bits & 0x1:
            raise DocumentError(FailureCode.ENCRYPTED, f"the {kind} file is encrypted")
    if total > limits.max_unpacked_bytes:
        raise DocumentError(FailureCode.ARCHIVE_BOMB, f"the {kind} file unpacks to {total} bytes, "
                            f"over the limit of {limits.max_unpacked_bytes}")
    return archive


def library_error(kind: str, exc: Exception) -> DocumentError:
    """A format library's failure on a checked archive, as the document's failure."""
    return DocumentError(FailureCode.INVALID_DOCUMENT, f"unreadable {kind} file: "
                         f"{type(exc).__name__}: {exc}")


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def refuse_ole(data: bytes, kind: str) -> None:
    """An Office file saved with a password is an OLE container, not a zip: say so."""
    if data[:8] == _OLE_MAGIC:
        raise DocumentError(FailureCode.ENCRYPTED, f"the {kind} file is password-protected "
                            "(or an old binary Office file): save it without a password")
