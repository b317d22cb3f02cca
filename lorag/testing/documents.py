"""Documents of every format lorag reads, made here with the formats' own libraries
(python-docx, python-pptx, openpyxl, EbookLib, the ``email`` package, fpdf2), each
with distinctive sentences whose place (section path, slide, page, sheet) is known.

``FIXTURES`` lists, per file name, how to make it and what a search must find:
``Expect(query, sentence, location)``. ``write_all(folder)`` writes them all. Also the
hostile documents of the reliability suite (a zip-bomb DOCX, a password-protected PDF,
a spreadsheet of too many rows).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Expect:
    """A search for ``query`` must find a chunk holding ``sentence``, cited at ``location``
    (as ``describe_location`` puts it)."""

    query: str
    sentence: str
    location: str


TABLE_ROW = ("Turbo blender X9", "1200 watts", "two years", "149 euros")


def docx_bytes(variant: int = 0) -> bytes:
    import docx

    v = _variant(variant)

    document = docx.Document()
    document.core_properties.title = "Gadgetco warranty handbook"
    document.add_heading("Warranty", level=1)
    document.add_paragraph(v("Every Gadgetco appliance carries a warranty against defects."))
    document.add_heading("Returns", level=2)
    document.add_paragraph(v("A kettle returned within ninety days is refunded to the card "
                             "used at checkout."))
    document.add_heading("Models", level=1)
    table = document.add_table(rows=1, cols=4)
    for cell, text in zip(table.rows[0].cells, ("Model", "Power", "Warranty", "Price")):
        cell.text = text
    for row in (("Kettle K1", "2000 watts", "one year", "39 euros"), TABLE_ROW):
        for cell, text in zip(table.add_row().cells, row):
            cell.text = v(text)
    return _save(document)


def pptx_bytes(variant: int = 0) -> bytes:
    import pptx

    v = _variant(variant)

    deck = pptx.Presentation()
    slides = [("Quarterly review", "Revenue grew in every region this quarter."),
              ("Roadmap", "The solar charger ships to Norway in the spring."),
              ("Support", "Night-shift agents answer chats in Portuguese and Finnish.")]
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = v(body)
    return _save(deck)


def xlsx_bytes(rows: int = 0, variant: int = 0) -> bytes:
    """Two sheets of prices and stores; with ``rows``, one sheet of that many rows."""
    import openpyxl

    v = _variant(variant)
    book = openpyxl.Workbook()
    prices = book.active
    prices.title = "Prices"
    prices.append(["Product", "Price", "Stock"])
    prices.append(["Espresso grinder G7", "89 euros", v("backorder until March")])
    for n in range(rows):
        prices.append([f"Item {n}", f"{n} euros", "in stock"])
    stores = book.create_sheet("Stores")
    stores.append(["City", "Address", "Hours"])
    stores.append(["Lisbon", "Rua Augusta 12", v("open Sundays from noon")])
    return _save(book)


def epub_bytes(variant: int = 0) -> bytes:
    from ebooklib import epub

    v = _variant(variant)

    book = epub.EpubBook()
    book.set_identifier("gadgetco-guide")
    book.set_title("The Gadgetco guide")
    book.set_language("en")
    chapters = [("Cleaning", "Descale the coffee machine monthly with citric acid."),
                ("Storage", "Keep the lithium batteries at half charge over winter.")]
    items = []
    for n, (title, sentence) in enumerate(chapters, start=1):
        item = epub.EpubHtml(title=title, file_name=f"chapter{n}.xhtml", lang="en")
        item.content = f"<html><body><h1>{title}</h1><p>{v(sentence)}</p></body></html>"
        book.add_item(item)
        items.append(item)
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    buffer = io.BytesIO()
    epub.write_epub(buffer, book)
    return buffer.getvalue()


def eml_bytes(variant: int = 0) -> bytes:
    v = _variant(variant)
    message = EmailMessage()
    message["From"] = "Dana <dana@gadgetco.example>"
    message["To"] = "support@gadgetco.example"
    message["Subject"] = "Recall of the toaster T3"
    message["Date"] = "Mon, 02 Mar 2026 10:00:00 +0000"
    message.set_content(v("Customers with a toaster T3 get a free replacement heating coil."))
    message.add_attachment(v("Couriers collect recalled toasters on Tuesdays only.").encode(),
                           maintype="text", subtype="plain", filename="courier-notes.txt")
    return message.as_bytes()


def pdf_bytes(variant: int = 0) -> bytes:
    from fpdf import FPDF

    v = _variant(variant)

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, v("Installation manual. Mount the heat pump on a north-facing wall."))
    pdf.add_page()
    pdf.multi_cell(0, 8, v("Noise levels of each model are measured at one metre."))
    with pdf.table() as table:
        for row in (("Model", "Noise", "Weight", "Price"),
                    ("Heat pump H4", "38 decibels", "55 kilos", "2400 euros")):
            cells = table.row()
            for text in row:
                cells.cell(v(text))
    return bytes(pdf.output())


def csv_bytes(variant: int = 0) -> bytes:
    v = _variant(variant)
    return (f"Route,Departs,Arrives\nPorto ferry,08:15,{v('09:40')}\n"
            f"Night bus to Faro,23:05,{v('04:50')}\n").encode()


def _variant(variant: int) -> Callable[[str], str]:
    """Variant 0 is the fixture; others tag every text, so no two variants share a
    chunk (benchmarks ingest many distinct copies)."""
    return (lambda text: text) if not variant else (lambda text: f"{text} (copy {variant})")


def _save(document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# file name -> (maker(variant=0), what a search must find in variant 0)
FIXTURES: dict[str, tuple[Callable[..., bytes], list[Expect]]] = {
    "handbook.docx": (docx_bytes, [
        Expect("kettle returned ninety days refunded", "A kettle returned within ninety days",
               "Warranty > Returns"),
        Expect("Turbo blender X9 price", " | ".join(TABLE_ROW), "Models")]),
    "review.pptx": (pptx_bytes, [
        Expect("solar charger Norway spring", "The solar charger ships to Norway",
               "Roadmap, slide 2"),
        Expect("night shift agents Portuguese Finnish", "answer chats in Portuguese",
               "Support, slide 3")]),
    "catalogue.xlsx": (xlsx_bytes, [
        Expect("espresso grinder backorder", "Espresso grinder G7 | 89 euros | backorder",
               "sheet Prices"),
        Expect("Lisbon store open Sundays", "Lisbon | Rua Augusta 12 | open Sundays",
               "sheet Stores")]),
    "guide.epub": (epub_bytes, [
        Expect("descale coffee machine citric acid", "Descale the coffee machine monthly",
               "Cleaning"),
        Expect("lithium batteries half charge winter", "Keep the lithium batteries",
               "Storage")]),
    "recall.eml": (eml_bytes, [
        Expect("toaster T3 replacement heating coil", "free replacement heating coil", ""),
        Expect("couriers collect recalled toasters Tuesdays", "Couriers collect recalled "
               "toasters on Tuesdays", "Attachment: courier-notes.txt")]),
    "manual.pdf": (pdf_bytes, [
        Expect("mount heat pump north-facing wall", "Mount the heat pump on a north-facing",
               "page 1"),
        Expect("heat pump H4 noise decibels", "Heat pump H4 | 38 decibels | 55 kilos | 2400 euros",
               "page 2")]),
    "ferries.csv": (csv_bytes, [
        Expect("night bus Faro departs", "Night bus to Faro | 23:05 | 04:50", "")]),
}


def write_all(folder: Path) -> dict[str, list[Expect]]:
    """Write every fixture into ``folder``; what each must let a search find, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (make, _) in FIXTURES.items():
        (folder / name).write_bytes(make())
    return {name: expects for name, (_, expects) in FIXTURES.items()}


# --- hostile documents -------------------------------------------------------------------

def zip_bomb_docx(size: int = 64 * 2**20) -> bytes:
    """A DOCX whose document part unpacks from a few hundred KiB to ``size`` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes())) as source, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "word/document.xml":
                data = data.replace(b"</w:body>", b" " * size + b"</w:body>")
            bomb.writestr(info.filename, data)
    return buffer.getvalue()


def encrypted_pdf() -> bytes:
    """A PDF that opens only with a password."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes())))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def long_spreadsheet(rows: int = 10_000) -> bytes:
    return xlsx_bytes(rows=rows)
