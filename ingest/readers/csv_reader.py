"""CSV with the standard library: one table, the first row its header."""

from __future__ import annotations

import csv
import io

from ingest.readers import ReadContext, register
from ingest.readers.text_reader import decode_text
from ingest.readers.xlsx_reader import RowBudget
from ingest.structure import Parsed, TableBlock
from ingest.types import DocumentError, FailureCode


@register(".csv")
def read_csv(data: bytes, context: ReadContext) -> Parsed:
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = RowBudget(context.limits.max_table_rows).take(
            csv.reader(io.StringIO(text, newline=""), dialect), "the CSV file")
    except csv.Error as exc:
        raise DocumentError(FailureCode.INVALID_DOCUMENT, f"invalid CSV: {exc}") from None
    return Parsed(None, [TableBlock(rows)])
