"""Spreadsheets with openpyxl (read-only, cached values): each sheet one table, its
first row the header, the sheet's name as the location."""

from __future__ import annotations

import io

from ingest.readers import ReadContext, register
from ingest.readers.archive import library_error, open_zip, refuse_ole
from ingest.structure import Parsed, TableBlock
from ingest.types import DocumentError, FailureCode


@register(".xlsx")
def read_xlsx(data: bytes, context: ReadContext) -> Parsed:
    refuse_ole(data, "XLSX")
    open_zip(data, context, "XLSX")
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise library_error("XLSX", exc) from None
    try:
        rows = RowBudget(context.limits.max_table_rows)
        blocks = [TableBlock(rows.take(sheet.iter_rows(values_only=True), sheet.title),
                             {"sheet": sheet.title}) for sheet in book.worksheets]
        return Parsed(book.properties.title or None, blocks)
    except DocumentError:
        raise
    except Exception as exc:
        raise library_error("XLSX", exc) from None
    finally:
        book.close()


class RowBudget:
    """Counts rows across a document's tables; too many is the document's failure."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, rows, where: str) -> tuple[tuple[str, ...], ...]:
        kept = []
        for row in rows:
            cells = tuple("" if value is None else str(value) for value in row)
            if not any(cell.strip() for cell in cells):
                continue
            self.used += 1
            if self.used > self.limit:
                raise DocumentError(FailureCode.TOO_MANY_ROWS, f"more than {self.limit} rows "
                                    f"(at {where}); the limit is ingest.formats.max_table_rows")
            kept.append(_trim(cells))
        return tuple(kept)


def _trim(cells: tuple[str, ...]) -> tuple[str, ...]:
    """A row without its trailing empty cells (sheets report their whole used width)."""
    end = len(cells)
    while end and not cells[end - 1].strip():
        end -= 1
    return cells[:end]
