"""PDF files with a text layer: each page's text, paragraphs rejoined by `reflow`.

pypdf hands back lines with no blank line between paragraphs, so a line that ends a sentence well
short of the usual line width is taken as a paragraph's end before reflowing. A line of only
digits at the top or bottom of a page is a page number and is dropped. Pages are joined by a
single line break, so a paragraph running over a page break is rejoined. Encrypted PDFs are read
when they open with an empty password (permissions-only protection).
"""

from __future__ import annotations

import io
import re

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from ltm.ingest.raw import RawDocument, ReaderError
from ltm.ingest.reflow import reflow

_PAGE_NUMBER = re.compile(r"\s*\d{1,4}\s*")
_SENTENCE_END = re.compile(r"[.!?…:\"'»”)]\s*$")
_SHORT_LINE = 0.75  # of the usual (80th percentile) line width
_UNREADABLE = (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError)


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
    except _UNREADABLE as exc:
        raise ReaderError(f"unreadable PDF: {exc}") from exc
    if reader.is_encrypted and not _opens_without_password(reader):
        raise ReaderError("encrypted PDF (needs a password)")
    return reader


def _opens_without_password(reader: PdfReader) -> bool:
    try:
        return bool(reader.decrypt(""))
    except _UNREADABLE:  # e.g. AES without the optional crypto library
        return False


def _page_lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if lines and _PAGE_NUMBER.fullmatch(lines[0]):
        lines = lines[1:]
    if lines and _PAGE_NUMBER.fullmatch(lines[-1]):
        lines = lines[:-1]
    return lines


def _mark_paragraph_ends(lines: list[str]) -> str:
    """Put a blank line after each line that ends a sentence well short of the usual width."""
    if not lines:
        return ""
    widths = sorted(len(line) for line in lines)
    usual = widths[int(0.8 * (len(widths) - 1))]
    out = []
    for line in lines:
        out.append(line)
        if len(line) < _SHORT_LINE * usual and _SENTENCE_END.search(line):
            out.append("")
    return "\n".join(out)


def _metadata(reader: PdfReader) -> dict[str, str]:
    try:
        info = reader.metadata
    except _UNREADABLE:
        return {}
    fields = {"title": info.title, "author": info.author} if info else {}
    return {key: " ".join(str(value).split()) for key, value in fields.items() if value and str(value).strip()}


def read_pdf(data: bytes, name: str) -> list[RawDocument]:
    reader = _open(data)
    try:
        pages = [page.extract_text() or "" for page in reader.pages]
    except _UNREADABLE as exc:
        raise ReaderError(f"unreadable PDF: {exc}") from exc
    lines = [line for page in pages for line in _page_lines(page)]
    text = reflow(_mark_paragraph_ends(lines))
    if not text.strip():
        raise ReaderError("no text layer (scanned PDF?)")
    return [RawDocument(text=text, format="pdf", meta={"pages": len(pages)}, **_metadata(reader))]
