"""EPUB books: the spine's documents in reading order, one section per chapter document. Read with
zipfile and lxml: the container names the package, whose manifest, spine and metadata say the rest.

A chapter's section is titled by its table-of-contents entry, else by its first h1-h3 heading;
later h1-h3 headings in the same document open subsections. A document with neither (a file split
for size) continues without a section of its own. Non-linear nav and cover pages are skipped; other
non-linear documents (endnotes) are read. Footnote <aside>s go to `notes`.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass
from urllib.parse import unquote

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
_NS = {"c": "urn:oasis:names:tc:opendocument:xmlns:container", "opf": "http://www.idpf.org/2007/opf",
       "dc": "http://purl.org/dc/elements/1.1/", "ncx": "http://www.daisy.org/z3986/2005/ncx/",
       "xhtml": "http://www.w3.org/1999/xhtml", "epub": "http://www.idpf.org/2007/ops"}
_XHTML = {"application/xhtml+xml", "text/html"}
_XML = etree.XMLParser(resolve_entities=False, no_network=True, recover=False)


@dataclass
class _Item:
    path: str  # inside the zip
    media_type: str
    properties: str
    ident: str


class _Epub:
    """The parts of an EPUB that reading needs: the package (OPF) found through
    META-INF/container.xml, its manifest, spine and Dublin Core metadata, read with zipfile and lxml."""

    def __init__(self, data: bytes):
        self.zip = zipfile.ZipFile(io.BytesIO(data))
        container = self._xml("META-INF/container.xml")
        rootfile = container.find(".//c:rootfile", _NS)
        if rootfile is None or not rootfile.get("full-path"):
            raise ValueError("META-INF/container.xml names no package file")
        self.opf_path = rootfile.get("full-path")
        self.opf = self._xml(self.opf_path)
        base = posixpath.dirname(self.opf_path)
        self.items = {item.get("id"): _Item(_join(base, item.get("href", "")), item.get("media-type", ""), item.get("properties", ""),
                                           item.get("id"))
                      for item in self.opf.iterfind("opf:manifest/opf:item", _NS) if item.get("id")}
        spine = self.opf.find("opf:spine", _NS)
        self.spine = [] if spine is None else [(ref.get("idref"), ref.get("linear", "yes")) for ref in spine.iterfind("opf:itemref", _NS)]
        self.ncx = spine.get("toc") if spine is not None else None

    def _xml(self, path: str) -> etree._Element:
        return etree.fromstring(self.zip.read(path), _XML)

    def read(self, path: str) -> bytes:
        return self.zip.read(path)

    def dc(self, name: str) -> list[etree._Element]:
        return [e for e in self.opf.iterfind(f"opf:metadata/dc:{name}", _NS) if (e.text or "").strip()]


def _join(base: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))


def _open(data: bytes) -> _Epub:
    try:
        return _Epub(data)
    except (zipfile.BadZipFile, KeyError, ValueError, etree.LxmlError) as exc:
        raise ReaderError(f"not a readable EPUB: {exc}") from exc


def _toc_titles(book: _Epub) -> dict[str, str]:
    """Document path -> title of its first table-of-contents entry: the EPUB 3 navigation document's
    toc, else the EPUB 2 NCX."""
    titles: dict[str, str] = {}
    nav = next((item for item in book.items.values() if "nav" in item.properties.split()), None)
    if nav is not None:
        root = parse_markup(decode_markup(book.read(nav.path)).text)
        tocs = [n for n in root.iter("nav") if "toc" in (n.get("epub:type") or n.get("role") or "").replace("doc-", "").split()]
        for link in (tocs[0] if tocs else root).iter("a"):
            title, href = " ".join(element_text(link).split()), link.get("href")
            if title and href:
                titles.setdefault(_join(posixpath.dirname(nav.path), href), title)
    elif book.ncx in book.items:
        ncx = book.items[book.ncx]
        for point in etree.fromstring(book.read(ncx.path), _XML).iterfind(".//ncx:navPoint", _NS):
            label, content = point.find("ncx:navLabel/ncx:text", _NS), point.find("ncx:content", _NS)
            title = " ".join((label.text or "").split()) if label is not None else ""
            if title and content is not None and content.get("src"):
                titles.setdefault(_join(posixpath.dirname(ncx.path), content.get("src")), title)
    return titles


def _is_front_matter(book: _Epub, item: _Item) -> bool:
    cover = next((m.get("content") for m in book.opf.iterfind("opf:metadata/opf:meta", _NS) if m.get("name") == "cover"), None)
    return "nav" in item.properties.split() or "cover" in f"{item.ident} {item.path}".lower() or item.ident == cover


def _spine_documents(book: _Epub) -> list[_Item]:
    documents = []
    for idref, linear in book.spine:
        item = book.items.get(idref)
        if item is None or item.media_type not in _XHTML:
            continue
        if linear == "no" and _is_front_matter(book, item):
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


def _author(book: _Epub) -> str | None:
    # EPUB 2 marks illustrators and editors with opf:role; creators without one are authors.
    names = [" ".join(e.text.split()) for e in book.dc("creator") if e.get(f"{{{_NS['opf']}}}role", "aut") == "aut"]
    return ", ".join(names) or None


def read_epub(data: bytes, name: str) -> list[RawDocument]:
    book = _open(data)
    titles = _toc_titles(book)
    builder = TextBuilder()
    notes: list[str] = []
    documents = _spine_documents(book)
    for item in documents:
        try:
            markup = book.read(item.path)
        except KeyError as exc:
            raise ReaderError(f"not a readable EPUB: the spine names {item.path}, which the archive lacks") from exc
        root = parse_markup(decode_markup(markup).text)
        notes.extend(_take_notes(root))
        _read_chapter(builder, root, titles.get(item.path))
    titles_dc, languages = book.dc("title"), book.dc("language")
    document = builder.document(
        "epub",
        title=" ".join(titles_dc[0].text.split()) if titles_dc else None,
        author=_author(book),
        lang=primary_language(languages[0].text.strip()) if languages else None,
        notes=notes,
        meta={"spine_documents": len(documents)},
    )
    if not document.text:
        raise ReaderError("empty: no text in the spine's documents")
    return [document]
