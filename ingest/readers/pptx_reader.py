"""Slide decks with python-pptx: each slide's title, text frames, tables and notes,
with the slide number as the location and the slide title as its section."""

from __future__ import annotations

import io

from ingest.readers import ReadContext, register
from ingest.readers.archive import library_error, open_zip, refuse_ole
from ingest.structure import Block, Parsed, Sections, TableBlock, TextBlock


@register(".pptx")
def read_pptx(data: bytes, context: ReadContext) -> Parsed:
    refuse_ole(data, "PPTX")
    open_zip(data, context, "PPTX")
    import pptx

    try:
        deck = pptx.Presentation(io.BytesIO(data))
        blocks = [block for number, slide in enumerate(deck.slides, start=1)
                  for block in _slide_blocks(slide, number)]
        return Parsed(deck.core_properties.title or None, blocks)
    except Exception as exc:
        raise library_error("PPTX", exc) from None


def _slide_blocks(slide, number: int) -> list[Block]:
    sections = Sections()
    title = slide.shapes.title
    if title is not None and title.has_text_frame:
        sections.enter(1, title.text_frame.text)
    location = sections.location(slide=number)
    blocks: list[Block] = []
    for shape in _shapes(slide.shapes):
        if getattr(shape, "has_table", False) and shape.has_table:
            rows = tuple(tuple(cell.text for cell in row.cells) for row in shape.table.rows)
            blocks.append(TableBlock(rows, location))
        elif shape.has_text_frame:
            blocks.append(TextBlock(shape.text_frame.text, location))
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        blocks.append(TextBlock(slide.notes_slide.notes_text_frame.text, location))
    return blocks


def _shapes(shapes):
    """Shapes in order, group shapes opened."""
    for shape in shapes:
        if hasattr(shape, "shapes"):
            yield from _shapes(shape.shapes)
        else:
            yield shape
