"""FictionBook 2 (.fb2): the book's bodies with their sections, verse and scene breaks; notes apart.

Parsed from the raw bytes, so the encoding the XML declaration names (often windows-1251) is the
one used. Element names are matched without their namespace: FB2 files in the wild use several.

- Each <section> is a Section whose level is its nesting depth; section, poem and body titles stay
  in the text as paragraphs, so the reader sees chapter titles.
- A <stanza> is one paragraph with one line per <v>.
- <empty-line/> and a paragraph of only asterisks or dashes ("* * *", "***", "—") are scene breaks;
  the mark itself is left out of the text.
- Bodies named "notes" or "comments" become `notes`, one string per note section, "TITLE. text"
  (e.g. "1. ..."); meta["note_ids"] holds the sections' ids in the same order.
"""

from __future__ import annotations

import codecs
import re

from lxml import etree

from ltm.ingest.raw import RawDocument, ReaderError, TextBuilder, is_scene_separator
from ltm.ingest.readers.html import primary_language

_NOTE_BODIES = {"notes", "comments"}
_CONTAINERS = {"epigraph", "cite", "annotation", "table", "tr"}
_PARAGRAPHS = {"p", "subtitle", "text-author", "date", "v", "td", "th"}
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")


def _name(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""  # "" for comments, PIs


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element if _name(child) == name]


def _child(element: etree._Element | None, name: str) -> etree._Element | None:
    found = _children(element, name) if element is not None else []
    return found[0] if found else None


def _text(element: etree._Element | None) -> str:
    """Inline markup (emphasis, style, note links) contributes its text; source line breaks do not."""
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _join_title(title: str, text: str) -> str:
    if not title or not text:
        return title or text
    return f"{title} {text}" if title[-1] in ".:;!?)]" else f"{title}. {text}"


def _title_text(title: etree._Element | None) -> str | None:
    parts = [_text(p) for p in _children(title, "p")] if title is not None else []
    joined = ""
    for part in filter(None, parts):
        joined = _join_title(joined, part)
    return joined or None


class _BodyReader:
    def __init__(self, builder: TextBuilder) -> None:
        self.builder = builder

    def block(self, element: etree._Element, depth: int) -> None:
        name = _name(element)
        if name == "section":
            self.section(element, depth + 1)
        elif name == "title":
            for p in _children(element, "p"):
                self.paragraph(_text(p))
        elif name == "poem":
            for child in element:
                if _name(child) == "stanza":
                    self.stanza(child)
                else:
                    self.block(child, depth)
        elif name == "empty-line":
            self.builder.scene_break()
        elif name in _CONTAINERS:
            for child in element:
                self.block(child, depth)
        elif name in _PARAGRAPHS:
            self.paragraph(_text(element))
        # anything else (image, binary, unknown markup) carries no text of the book

    def section(self, element: etree._Element, level: int) -> None:
        self.builder.open_section(_title_text(_child(element, "title")), level)
        for child in element:
            self.block(child, level)
        self.builder.close_section()

    def stanza(self, element: etree._Element) -> None:
        for child in element:
            if _name(child) != "v":
                self.block(child, 0)
        lines = [_text(v) for v in _children(element, "v")]
        self.builder.paragraph("\n".join(lines), keep_lines=True)

    def paragraph(self, text: str) -> None:
        if is_scene_separator(text):
            self.builder.scene_break()
        else:
            self.builder.paragraph(text)


def _codec_name(declared: str | None) -> str:
    try:
        return codecs.lookup(declared or "utf-8").name
    except LookupError:  # libxml2 knows a few encodings Python names differently
        return declared.lower()


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(recover=False, huge_tree=True, resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise ReaderError(f"broken XML: {exc}") from exc
    if _name(root) != "FictionBook":
        raise ReaderError(f"not a FictionBook file: root element is <{_name(root)}>")
    return root


def _notes(bodies: list[etree._Element]) -> tuple[list[str], list[str | None]]:
    notes, ids = [], []
    for body in bodies:
        for section in _children(body, "section"):
            builder = TextBuilder()
            reader = _BodyReader(builder)
            for child in section:
                if _name(child) != "title":
                    reader.block(child, 0)
            note = _join_title(_title_text(_child(section, "title")) or "", builder.text())
            if note:
                notes.append(note)
                ids.append(section.get("id"))
    return notes, ids


def _author(title_info: etree._Element | None) -> str | None:
    names = []
    for author in _children(title_info, "author") if title_info is not None else []:
        parts = [_text(_child(author, part)) for part in ("first-name", "middle-name", "last-name")]
        names.append(" ".join(filter(None, parts)) or _text(_child(author, "nickname")))
    return ", ".join(filter(None, names)) or None


def _year(title_info: etree._Element | None) -> int | None:
    date = _child(title_info, "date")
    if date is None:
        return None
    for candidate in (date.get("value") or "", _text(date)):  # @value is the machine-readable one
        match = _YEAR.search(candidate)
        if match:
            return int(match.group())
    return None


def _meta(title_info: etree._Element | None) -> dict:
    meta: dict = {}
    genres = [_text(g) for g in _children(title_info, "genre")] if title_info is not None else []
    if any(genres):
        meta["genres"] = [g for g in genres if g]
    year = _year(title_info)
    if year is not None:
        meta["year"] = year
    annotation = TextBuilder()
    annotation_element = _child(title_info, "annotation")
    if annotation_element is not None:
        _BodyReader(annotation).block(annotation_element, 0)
        meta["annotation"] = annotation.text()
    return meta


def read_fb2(data: bytes, name: str) -> list[RawDocument]:
    root = _parse(data)
    title_info = _child(_child(root, "description"), "title-info")
    bodies = _children(root, "body")
    note_bodies = [b for b in bodies if (b.get("name") or "").lower() in _NOTE_BODIES]
    builder = TextBuilder()
    reader = _BodyReader(builder)
    for body in bodies:
        if body not in note_bodies:
            for child in body:
                reader.block(child, 0)
    notes, note_ids = _notes(note_bodies)
    meta = _meta(title_info)
    if notes:
        meta["note_ids"] = note_ids
    document = builder.document(
        "fb2",
        title=_text(_child(title_info, "book-title")) or None,
        author=_author(title_info),
        lang=primary_language(_text(_child(title_info, "lang"))),
        notes=notes,
        meta=meta,
        encoding=_codec_name(root.getroottree().docinfo.encoding),
    )
    if not document.text:
        raise ReaderError("empty: no text in the book's body")
    return [document]
