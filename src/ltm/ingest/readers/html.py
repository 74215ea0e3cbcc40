"""HTML pages (.html, .htm, .xhtml), and the HTML walking the EPUB reader shares.

Block elements become paragraphs, <br> a line break inside one, <hr> a scene break, headings open
sections. Page furniture (script, style, nav, header, footer, aside) is dropped. A paragraph of
only asterisks or dashes ("* * *", "***", "—") is a scene-break mark: recorded, not kept as text.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

import lxml.html
from lxml import etree

from ltm.ingest.decode import Decoded, decode
from ltm.ingest.raw import RawDocument, ReaderError, TextBuilder, is_scene_separator

_BLOCKS = frozenset(
    "address article blockquote body caption center dd details div dl dt fieldset figcaption figure"
    " form html li main ol p section summary table tbody td tfoot th thead tr ul".split()
)
HEADING_RANKS = {f"h{rank}": rank for rank in range(1, 7)}
PAGE_FURNITURE = frozenset({"script", "style", "nav", "header", "footer", "aside", "noscript", "template", "head"})
_WHITESPACE = re.compile(r"\s+")
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_DECLARED = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)|<\?xml[^>]*?encoding\s*=\s*["']([\w.:-]+)""", re.I)
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")


def primary_language(tag: str | None) -> str | None:
    """"en-US" -> "en": the pipeline routes by language, not by region."""
    if not tag or not tag.strip():
        return None
    return re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()


def decode_markup(data: bytes) -> Decoded:
    """Decode with the charset the page declares; a BOM, no declaration or a wrong one falls back to `decode`."""
    match = None if data.startswith(_BOMS) else _DECLARED.search(data[:4096])
    if match:
        declared = (match.group(1) or match.group(2)).decode("ascii")
        try:
            encoding = codecs.lookup(declared).name
            return Decoded(data.decode(encoding), encoding)
        except (LookupError, UnicodeDecodeError):
            pass
    return decode(data)


def parse_markup(text: str) -> lxml.html.HtmlElement:
    # lxml refuses a str that still carries an XML encoding declaration.
    try:
        return lxml.html.document_fromstring(_XML_DECLARATION.sub("", text, count=1))
    except (etree.ParserError, ValueError) as exc:
        raise ReaderError(f"unreadable HTML: {exc}") from exc


def element_text(element: etree._Element) -> str:
    return _WHITESPACE.sub(" ", element.text_content()).strip()


class Outline:
    """Sections opened by headings: a heading closes the open sections of its rank or deeper."""

    def __init__(self, builder: TextBuilder) -> None:
        self.builder = builder
        self._ranks: list[int] = []

    def open(self, title: str | None, rank: int) -> None:
        while self._ranks and self._ranks[-1] >= rank:
            self.builder.close_section()
            self._ranks.pop()
        self.builder.open_section(title, level=len(self._ranks) + 1)
        self._ranks.append(rank)

    def heading(self, rank: int, title: str) -> None:
        self.open(title, rank)
        self.builder.paragraph(title)  # the title stays in the text, where the reader sees it

    def close_all(self) -> None:
        while self._ranks:
            self.builder.close_section()
            self._ranks.pop()


class HtmlWalker:
    """Feed an HTML tree to a TextBuilder; headings go to `on_heading(rank, title)`."""

    def __init__(self, builder: TextBuilder, on_heading: Callable[[int, str], None], drop: frozenset[str]) -> None:
        self.builder = builder
        self.on_heading = on_heading
        self.drop = drop
        self._pending: list[str] = []

    def walk(self, element: etree._Element) -> None:
        self._element(element)
        self._flush()

    def _element(self, element: etree._Element) -> None:
        tag = element.tag.lower() if isinstance(element.tag, str) else None  # None: comment or PI
        if tag is None or tag in self.drop:
            return
        if tag in HEADING_RANKS:
            self._flush()
            title = element_text(element)
            if title:
                self.on_heading(HEADING_RANKS[tag], title)
        elif tag == "hr":
            self._flush()
            self.builder.scene_break()
        elif tag == "br":
            self._pending.append("\n")
        elif tag == "pre":
            self._flush()
            self.builder.paragraph(element.text_content(), keep_lines=True)
        else:
            self._container(element, block=tag in _BLOCKS)

    def _container(self, element: etree._Element, block: bool) -> None:
        if block:
            self._flush()
        self._inline(element.text)
        for child in element:
            self._element(child)
            self._inline(child.tail)
        if block:
            self._flush()

    def _inline(self, text: str | None) -> None:
        if text:
            self._pending.append(_WHITESPACE.sub(" ", text))  # source line breaks are not <br>

    def _flush(self) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        if is_scene_separator(text):
            self.builder.scene_break()
        else:
            self.builder.paragraph(text, keep_lines="\n" in text.strip())


def _title(root: lxml.html.HtmlElement) -> str | None:
    for path in ("//title", "//h1"):
        found = root.xpath(path)
        if found and element_text(found[0]):
            return element_text(found[0])
    return None


def read_html(data: bytes, name: str) -> list[RawDocument]:
    decoded = decode_markup(data)
    root = parse_markup(decoded.text)
    builder = TextBuilder()
    outline = Outline(builder)
    body = root.find("body")
    HtmlWalker(builder, outline.heading, PAGE_FURNITURE).walk(body if body is not None else root)
    document = builder.document("html", title=_title(root), lang=primary_language(root.get("lang")), encoding=decoded.encoding)
    if not document.text:
        raise ReaderError("empty: no text in the page")
    return [document]
