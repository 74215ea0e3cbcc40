"""EPUB books: the spine's documents in reading order, one section per chapter document.

A chapter's section is titled by its table-of-contents entry, else by its first h1-h3 heading;
later h1-h3 headings in the same document open subsections. A document with neither (a file split
for size) continues without a section of its own. Non-linear nav and cover pages are skipped; other
non-linear documents (endnotes) are read. Footnote <aside>s go to `notes`.
"""

from __future__ import annotations

import io
import posixpath
import warnings
import zipfile
from urllib.parse import unquote

from ebooklib import epub
from lxml import etree

from ltm.ingest.raw import RawDocument, ReaderError, TextBuilder
from ltm.ingest.readers.html import (
    HtmlWalker,
    Outline,
    decode_markup,
    element_text,
    parse_markup,
    primary_language,
)

# Unlike a web page, a chapter's <header> or <aside> may hold its title or text.
_DROPPED = frozenset({"script", "style", "nav", "noscript", "template", "head"})
_SECTION_HEADINGS = 3  # h1-h3 title chapters; h4-h6 are bylines, dates, epigraphs
_NOTE_TYPES = {"footnote", "endnote", "rearnote", "note"}
_OPF = "http://www.idpf.org/2007/opf"
# ebooklib lets through whatever a malformed container, OPF or nav raises.
_UNREADABLE = (
    epub.EpubException, zipfile.BadZipFile, KeyError, ValueError, AttributeError, IndexError, TypeError, etree.LxmlError,
)


def _open(data: bytes) -> epub.EpubBook:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib warns about its own future defaults
            return epub.read_epub(io.BytesIO(data), {"ignore_ncx": True})
    except _UNREADABLE as exc:
        raise ReaderError(f"not a readable EPUB: {exc}") from exc


def _href_key(href: str) -> str:
    return posixpath.normpath(unquote(href.split("#", 1)[0]))


def _toc_titles(entries: list) -> dict[str, str]:
    """Document path -> title of its first table-of-contents entry."""
    titles: dict[str, str] = {}
    for entry in entries:
        node, children = entry if isinstance(entry, tuple) else (entry, [])
        title = " ".join((getattr(node, "title", None) or "").split())
        href = getattr(node, "href", None)
        if href and title:
            titles.setdefault(_href_key(href), title)
        for key, value in _toc_titles(children).items():
            titles.setdefault(key, value)
    return titles


def _is_front_matter(item: epub.EpubItem) -> bool:
    names = f"{item.get_id() or ''} {item.get_name() or ''}".lower()
    return isinstance(item, (epub.EpubNav, epub.EpubCoverHtml)) or "cover" in names


def _spine_documents(book: epub.EpubBook) -> list[epub.EpubHtml]:
    documents = []
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if not isinstance(item, epub.EpubHtml):
            continue
        if linear == "no" and _is_front_matter(item):
            continue
        documents.append(item)
    return documents


def _take_notes(root: etree._Element) -> list[str]:
    notes = []
    for aside in root.xpath("//aside"):
        kinds = set((aside.get("epub:type") or aside.get("role") or "").replace("doc-", "").split())
        if kinds & _NOTE_TYPES:
            if element_text(aside):
                notes.append(element_text(aside))
            aside.drop_tree()
    return notes


def _read_chapter(builder: TextBuilder, root: etree._Element, toc_title: str | None) -> None:
    outline = Outline(builder)
    if toc_title:
        outline.open(toc_title, rank=0)  # rank 0: no heading inside the document closes it
    title_pending = bool(toc_title)  # the document's first heading repeats its TOC entry

    def on_heading(rank: int, title: str) -> None:
        nonlocal title_pending
        if rank > _SECTION_HEADINGS or title_pending:
            builder.paragraph(title)
            title_pending = title_pending and rank > _SECTION_HEADINGS
        else:
            outline.heading(rank, title)

    body = root.find("body")
    HtmlWalker(builder, on_heading, _DROPPED).walk(body if body is not None else root)
    outline.close_all()


def _dc(book: epub.EpubBook, name: str) -> list[tuple[str, dict]]:
    return [(" ".join(value.split()), extra) for value, extra in book.get_metadata("DC", name) if value and value.strip()]


def _author(book: epub.EpubBook) -> str | None:
    # EPUB 2 marks illustrators and editors with opf:role; creators without one are authors.
    names = [value for value, extra in _dc(book, "creator") if extra.get(f"{{{_OPF}}}role", "aut") == "aut"]
    return ", ".join(names) or None


def read_epub(data: bytes, name: str) -> list[RawDocument]:
    book = _open(data)
    titles = _toc_titles(book.toc)
    builder = TextBuilder()
    notes: list[str] = []
    documents = _spine_documents(book)
    for item in documents:
        root = parse_markup(decode_markup(item.get_content()).text)
        notes.extend(_take_notes(root))
        _read_chapter(builder, root, titles.get(_href_key(item.get_name())))
    titles_dc, languages = _dc(book, "title"), _dc(book, "language")
    document = builder.document(
        "epub",
        title=titles_dc[0][0] if titles_dc else None,
        author=_author(book),
        lang=primary_language(languages[0][0]) if languages else None,
        notes=notes,
        meta={"spine_documents": len(documents)},
    )
    if not document.text:
        raise ReaderError("empty: no text in the spine's documents")
    return [document]
