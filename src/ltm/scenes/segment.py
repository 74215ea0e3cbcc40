"""The scene segmenter: cut a document into scenes along paragraph boundaries.

Paragraphs are grouped while the scene stays under `max_chars`; a scene shorter than `min_chars`
takes the next paragraph even past that limit. A paragraph longer than `max_chars` is cut at
sentence ends (or, failing that, at spaces). Every span indexes the document text exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_PARAGRAPH = re.compile(r"[^\n]+(?:\n(?!\n)[^\n]*)*")  # runs of non-blank lines
_SENTENCE_END = re.compile(r"[.!?…»\"”)]+\s+")


def paragraphs(text: str) -> Iterator[tuple[int, int]]:
    for match in _PARAGRAPH.finditer(text):
        if match.group().strip():
            yield match.start(), match.end()


def _split_long(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Cut text[start:end] into pieces of at most max_chars, preferring sentence ends."""
    while end - start > max_chars:
        window = text[start : start + max_chars]
        cuts = [m.end() for m in _SENTENCE_END.finditer(window)]
        cut = cuts[-1] if cuts and cuts[-1] > max_chars // 3 else window.rfind(" ") + 1
        if cut <= 0:
            cut = max_chars
        yield start, start + cut
        start += cut
    if end > start:
        yield start, end


def segment(text: str, min_chars: int, max_chars: int) -> list[tuple[int, int]]:
    """Return (start, end) spans of scenes covering the text's paragraphs in order."""
    pieces = [p for s, e in paragraphs(text) for p in _split_long(text, s, e, max_chars)]
    spans: list[tuple[int, int]] = []
    for start, end in pieces:
        if spans:
            cur_start, cur_end = spans[-1]
            too_small = cur_end - cur_start < min_chars
            if too_small or end - cur_start <= max_chars:
                spans[-1] = (cur_start, end)
                continue
        spans.append((start, end))
    return spans
