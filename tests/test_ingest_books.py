"""Book readers: FB2, EPUB, HTML and PDF, on files the tests write and on the shared real files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfWriter

from ltm.ingest.raw import ReaderError
from ltm.ingest.readers import reader_for
from ltm.ingest.readers.epub import read_epub
from ltm.ingest.readers.fb2 import read_fb2
from ltm.ingest.readers.html import read_html
from ltm.ingest.readers.pdf import read_pdf

FORMATS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "formats"

FB2 = """<?xml version="1.0" encoding="windows-1251"?>
<FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0" xmlns:l="http://www.w3.org/1999/xlink">
 <description>
  <title-info>
   <genre>prose_contemporary</genre>
   <author><first-name>Иван</first-name><middle-name>Петрович</middle-name><last-name>Сидоров</last-name></author>
   <book-title>Морской берег</book-title>
   <date>лето 1999 года</date>
   <lang>ru</lang>
  </title-info>
 </description>
 <body>
  <title><p>Морской берег</p></title>
  <epigraph><p>Море всегда право.</p><text-author>Старый рыбак</text-author></epigraph>
  <section>
   <title><p>Часть первая</p></title>
   <section>
    <title><p>Глава 1</p></title>
    <p>Утром Вера вышла к <emphasis>самой</emphasis> воде и долго смотрела на волны<a l:href="#n1" type="note">[1]</a>.</p>
    <empty-line/>
    <p>Днём пришёл отец.</p>
    <p>* * *</p>
    <p>Вечером зажгли маяк.</p>
   </section>
   <section>
    <title><p>Глава 2</p></title>
    <poem>
     <title><p>Песня</p></title>
     <stanza><v>Волна идёт,</v><v>волна уходит,</v><v>а берег ждёт.</v></stanza>
    </poem>
    <cite><p>Кто ждёт, тот дождётся.</p><text-author>Пословица</text-author></cite>
    <image l:href="#pic.png"/>
   </section>
  </section>
 </body>
 <body name="notes">
  <title><p>Примечания</p></title>
  <section id="n1"><title><p>1</p></title><p>Волны здесь высокие даже летом.</p></section>
 </body>
</FictionBook>
"""


def _requires_formats() -> None:
    if not FORMATS.is_dir():
        pytest.skip("../shared/corpora not present: real-format tests need it")


# --- FB2 --------------------------------------------------------------------------------------------


def test_fb2_in_windows_1251_keeps_structure_breaks_verse_and_notes():
    doc = read_fb2(FB2.encode("cp1251"), "shore.fb2")[0]
    assert (doc.title, doc.author, doc.lang, doc.encoding) == ("Морской берег", "Иван Петрович Сидоров", "ru", "cp1251")
    assert doc.meta["year"] == 1999 and doc.meta["genres"] == ["prose_contemporary"]
    assert [(s.title, s.level) for s in doc.sections] == [("Часть первая", 1), ("Глава 1", 2), ("Глава 2", 2)]
    for section in doc.sections:
        assert doc.text[section.start:section.end].startswith(section.title)
    assert doc.text.startswith("Морской берег\n\nМоре всегда право.\n\nСтарый рыбак")
    assert "к самой воде и долго смотрела на волны[1]." in doc.text
    assert "Волна идёт,\nволна уходит,\nа берег ждёт." in doc.text
    assert "Песня" in doc.text and "Кто ждёт, тот дождётся.\n\nПословица" in doc.text
    assert "*" not in doc.text
    assert [doc.text[b:].split("\n")[0] for b in doc.breaks] == ["Днём пришёл отец.", "Вечером зажгли маяк."]
    assert doc.notes == ["1. Волны здесь высокие даже летом."] and doc.meta["note_ids"] == ["n1"]
    assert "высокие" not in doc.text and "Примечания" not in doc.text


def test_fb2_broken_xml_is_a_reader_error():
    with pytest.raises(ReaderError, match="broken XML"):
        read_fb2(FB2.replace("</body>", "", 1).encode("cp1251"), "broken.fb2")


def test_fb2_real_example():
    _requires_formats()
    doc = read_fb2((FORMATS / "gribuser_example.fb2").read_bytes(), "gribuser_example.fb2")[0]
    assert (doc.title, doc.lang, doc.meta["year"]) == ("Война и мир", "ru", 1869)
    assert doc.author == "Лев Николаевич Толстой"
    assert len(doc.sections) > 20 and max(s.level for s in doc.sections) >= 5
    assert all(doc.text[s.start:s.end].startswith(s.title) for s in doc.sections)
    assert len(doc.notes) == len(doc.meta["note_ids"]) == 6 and "note_1" in doc.meta["note_ids"]
    assert not any(note.split(". ", 1)[-1] in doc.text for note in doc.notes)
    assert any(paragraph.count("\n") >= 5 for paragraph in doc.text.split("\n\n"))  # a stanza's lines


# --- EPUB -------------------------------------------------------------------------------------------


def _epub(chapters: dict[str, str], spine: list[str], toc: dict[str, str], nav: bool = True) -> bytes:
    """An EPUB written here with zipfile: chapters (file -> body), the spine's order, the table of
    contents (file -> title) as an EPUB 3 navigation document (nav) or an EPUB 2 NCX."""
    buffer = io.BytesIO()
    items = "".join(f'<item id="{name}" href="text/{name}" media-type="application/xhtml+xml"/>' for name in chapters)
    links = "".join(f'<li><a href="{name}">{title}</a></li>' for name, title in toc.items())
    points = "".join(f'<navPoint id="p{n}"><navLabel><text>{title}</text></navLabel><content src="text/{name}"/></navPoint>'
                     for n, (name, title) in enumerate(toc.items()))
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
        archive.writestr("META-INF/container.xml", '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" version="1.0">'
                         '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>')
        nav_item = '<item id="nav" href="text/nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>' if nav else ""
        ncx_item = '' if nav else '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
        spine_toc = "" if nav else ' toc="ncx"'
        archive.writestr("OEBPS/content.opf", (
            '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id"><metadata '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf"><dc:identifier id="id">test-book</dc:identifier>'
            '<dc:title>The Lighthouse</dc:title><dc:language>en-GB</dc:language><dc:creator>Ada Keeper</dc:creator>'
            '<dc:creator opf:role="ill">Ink Painter</dc:creator></metadata>'
            f'<manifest>{nav_item}{ncx_item}{items}</manifest><spine{spine_toc}>'
            + ('<itemref idref="nav" linear="no"/>' if nav else "") + "".join(f'<itemref idref="{name}"/>' for name in spine)
            + "</spine></package>"))
        if nav:
            archive.writestr("OEBPS/text/nav.xhtml", '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
                             f'<body><nav epub:type="toc"><h1>Contents</h1><ol>{links}</ol></nav></body></html>')
        else:
            archive.writestr("OEBPS/toc.ncx", f'<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>{points}</navMap></ncx>')
        for name, body in chapters.items():
            archive.writestr(f"OEBPS/text/{name}", f'<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
                             f"<head><title>x</title></head><body>{body}</body></html>")
    return buffer.getvalue()


def _write_epub(nav: bool = True) -> bytes:
    # File names and manifest order say "a" first; the spine reads "b" first.
    chapters = {
        "a_return.xhtml": "<h2>Return</h2><p>She came back in spring.</p><h3>Later</h3><p>The lamp was cold.</p>"
                          '<aside epub:type="footnote"><p>Lamps were lit with whale oil.</p></aside>',
        "b_leave.xhtml": "<h1>Chapter One</h1><p>She left at dawn.</p><script>var x = 1;</script><p>* * *</p><p>The boat was small.</p>",
    }
    return _epub(chapters, ["b_leave.xhtml", "a_return.xhtml"], {"b_leave.xhtml": "Leaving"}, nav)


@pytest.mark.parametrize("nav", [True, False], ids=["epub3-nav", "epub2-ncx"])
def test_epub_reads_in_spine_order_with_chapter_sections(nav):
    doc = read_epub(_write_epub(nav), "book.epub")[0]
    assert (doc.title, doc.author, doc.lang) == ("The Lighthouse", "Ada Keeper", "en")
    assert doc.text.index("She left at dawn.") < doc.text.index("She came back in spring.")
    assert [(s.title, s.level) for s in doc.sections] == [("Leaving", 1), ("Return", 1), ("Later", 2)]
    assert doc.text[doc.sections[0].start:].startswith("Chapter One")  # TOC title, heading kept as text
    assert all(doc.text[s.start:s.end].startswith(s.title) for s in doc.sections[1:])
    assert "var x" not in doc.text and "*" not in doc.text
    assert doc.text[doc.breaks[0]:].startswith("The boat was small.")
    assert doc.notes == ["Lamps were lit with whale oil."] and "whale" not in doc.text


def test_epub_that_is_not_a_zip_or_lacks_its_opf_is_a_reader_error():
    with pytest.raises(ReaderError, match="not a readable EPUB"):
        read_epub(b"PK\x03\x04 not really a zip", "bad.epub")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
        archive.writestr(
            "META-INF/container.xml",
            '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" version="1.0"><rootfiles>'
            '<rootfile full-path="OPS/missing.opf" media-type="application/oebps-package+xml"/></rootfiles></container>',
        )
    with pytest.raises(ReaderError, match="not a readable EPUB"):
        read_epub(buffer.getvalue(), "no_opf.epub")


def test_epub_real_alice_in_spine_order():
    _requires_formats()
    doc = read_epub((FORMATS / "alice.epub").read_bytes(), "alice.epub")[0]
    assert (doc.title, doc.author, doc.lang) == ("Alice's Adventures in Wonderland", "Lewis Carroll", "en")
    titles = [s.title for s in doc.sections]
    assert len(titles) >= 11 and titles.index("Down The Rabbit-Hole") < titles.index("Alice's Evidence")
    assert doc.text.index("Down The Rabbit-Hole") < doc.text.index("Who Stole The Tarts?")
    assert "Contents" not in doc.text  # the non-linear nav page is skipped


def test_epub_real_title_page_only_book_reads():
    _requires_formats()
    # It holds a nav page (non-linear) and a title page: a short but readable book.
    doc = read_epub((FORMATS / "alice_without_cover.epub").read_bytes(), "alice_without_cover.epub")[0]
    assert (doc.title, doc.author) == ("Alice's Adventures in Wonderland", "Lewis Carroll")
    assert [s.title for s in doc.sections] == ["Title Page"]
    assert doc.text.startswith("Alice's Adventures In Wonderland") and len(doc.text) < 500


# --- HTML -------------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html lang="ru"><head><meta charset="windows-1251"><title>Маяк</title><style>p {color: red}</style></head>
<body>
<nav><a href="/">Главная</a></nav>
<header>Шапка сайта</header>
<h1>Маяк</h1>
<p>Смотритель поднялся
   по лестнице.</p>
<h2>Ночь</h2>
<p>Первая строка<br>вторая строка</p>
<hr>
<div>Утро пришло <b>тихо</b>.</div>
<footer>Подвал</footer>
</body></html>
"""


def test_html_in_windows_1251_with_meta_charset():
    doc = read_html(HTML.encode("cp1251"), "page.html")[0]
    assert (doc.title, doc.lang, doc.encoding) == ("Маяк", "ru", "cp1251")
    assert doc.text == "Маяк\n\nСмотритель поднялся по лестнице.\n\nНочь\n\nПервая строка\nвторая строка\n\nУтро пришло тихо."
    assert [(s.title, s.level) for s in doc.sections] == [("Маяк", 1), ("Ночь", 2)]
    assert all(doc.text[s.start:s.end].startswith(s.title) for s in doc.sections)
    assert doc.text[doc.breaks[0]:].startswith("Утро пришло")


def test_html_without_charset_is_decoded_by_content():
    doc = read_html("<html><body><p>Ёлка у дома.</p></body></html>".encode("utf-8"), "page.htm")[0]
    assert (doc.text, doc.encoding, doc.title) == ("Ёлка у дома.", "utf-8", None)


def test_book_suffixes_are_registered():
    names = ["a.FB2", "b.epub", "c.html", "d.htm", "e.xhtml", "f.pdf"]
    assert [reader_for(name) for name in names] == [read_fb2, read_epub, read_html, read_html, read_html, read_pdf]


# --- PDF --------------------------------------------------------------------------------------------

PDF_LINES = [
    "The keeper climbed the stairs every evening and lit the great lamp",
    "before the fishing boats came home across the dark and restless wa-",
    "ter of the bay, counting the steps as his father had taught him.",
    "He never missed a night.",
    "In the morning he wrote the weather into a thick book that smelled",
    "of salt and lamp oil, and then he slept until the gulls woke him.",
]


def _pdf_with_text(pages: list[list[str]]) -> bytes:
    """A PDF whose pages' lines are drawn in Helvetica, with a title and author in its Info."""
    kids = b" ".join(b"%d 0 R" % (5 + 2 * i) for i in range(len(pages)))  # page i is object 5 + 2i
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title (The Keeper) /Author (Ada Keeper) >>",
    ]
    for i, lines in enumerate(pages):
        drawn = "".join(f"({line}) Tj T* " for line in lines)
        stream = f"BT /F1 11 Tf 14 TL 50 750 Td {drawn}ET".encode("latin-1")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R"
                       b" /Resources << /Font << /F1 3 0 R >> >> >>" % (6 + 2 * i))
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_text_is_extracted_and_reflowed_across_pages():
    # The first paragraph runs over the page break, through a hyphen and the page number "1".
    pages = [PDF_LINES[:2] + ["1"], PDF_LINES[2:] + ["2"]]
    doc = read_pdf(_pdf_with_text(pages), "keeper.pdf")[0]
    assert (doc.title, doc.author, doc.meta["pages"], doc.format) == ("The Keeper", "Ada Keeper", 2, "pdf")
    paragraphs = doc.text.split("\n\n")
    assert len(paragraphs) == 2 and "\n" not in doc.text.replace("\n\n", "")
    assert "restless water of the bay" in paragraphs[0] and paragraphs[0].endswith("He never missed a night.")
    assert paragraphs[1].startswith("In the morning") and not any(c.isdigit() for c in doc.text)


def _blank_pdf(password: str | None = None) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    if password:
        writer.encrypt(password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_without_text_encrypted_or_garbage_is_a_reader_error():
    with pytest.raises(ReaderError, match="no text layer"):
        read_pdf(_blank_pdf(), "scan.pdf")
    with pytest.raises(ReaderError, match="encrypted"):
        read_pdf(_blank_pdf(password="secret"), "locked.pdf")
    with pytest.raises(ReaderError, match="unreadable PDF"):
        read_pdf(b"this is not a pdf at all" * 20, "garbage.pdf")
