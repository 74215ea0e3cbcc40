"""What a reader hands back: a document before ids, hashes, language and user tags are added."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from ltm.formats import Section, Turn


class ReaderError(ValueError):
    """The file cannot be read; the message says why in a few words (the caller adds the path)."""


@dataclass
class RawDocument:
    text: str
    format: str
    title: str | None = None
    author: str | None = None
    lang: str | None = None
    turns: list[Turn] | None = None
    sections: list[Section] = field(default_factory=list)
    breaks: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    encoding: str = "utf-8"
    repaired: list[str] = field(default_factory=list)
    part: str | None = None  # which document of a file that holds several (a conversation id)


_SEPARATOR = re.compile(r"[\s*\u2217\u2022\u2042\-\u2010-\u2015\u2212~]+")


def is_scene_separator(text: str) -> bool:
    """A paragraph made only of asterisks or dashes ("* * *", "***", "—") marks a scene break."""
    return bool(text.strip()) and _SEPARATOR.fullmatch(text) is not None


_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")


def clean_inline(text: str) -> str:
    """One paragraph's text: NFC, runs of spaces collapsed, ends stripped."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


class TextBuilder:
    """Assemble a document from paragraphs, keeping section and scene-break offsets exact.

    Paragraphs are joined by one blank line; a paragraph is cleaned with `clean_inline` unless
    `keep_lines` is set (verse keeps its line breaks).
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sections: list[Section] = []
        self._open: list[int] = []  # indexes into self.sections
        self.breaks: list[int] = []

    def _offset_of_next(self) -> int:
        return self.length + (2 if self.parts else 0)

    def paragraph(self, text: str, keep_lines: bool = False) -> None:
        if keep_lines:
            text = "\n".join(clean_inline(line) for line in text.split("\n") if line.strip())
        else:
            text = clean_inline(text)
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        self.parts.append(text)
        self.length += len(text)

    def open_section(self, title: str | None, level: int | None = None) -> None:
        start = self._offset_of_next()
        self.sections.append(Section(title=clean_inline(title) if title else None, level=level or len(self._open) + 1, start=start, end=start))
        self._open.append(len(self.sections) - 1)

    def close_section(self) -> None:
        index = self._open.pop()
        self.sections[index].end = max(self.sections[index].start, self.length)

    def scene_break(self) -> None:
        offset = self._offset_of_next()
        if offset > 0 and (not self.breaks or self.breaks[-1] != offset):
            self.breaks.append(offset)

    def text(self) -> str:
        while self._open:
            self.close_section()
        self.breaks = [b for b in self.breaks if b < self.length]
        return "".join(self.parts)

    def document(self, format: str, **fields) -> RawDocument:
        text = self.text()
        return RawDocument(text=text, format=format, sections=self.sections, breaks=self.breaks, **fields)
