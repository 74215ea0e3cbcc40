"""Sentences with exact offsets (razdel: rule-based, handles Russian and English abbreviations)."""

from __future__ import annotations

import re

from razdel import sentenize

def count_tokens(text: str) -> int:
    """Scene lengths are measured in words (whitespace-separated): the tokenizer does not exist yet
    at this stage; a byte-level BPE gives roughly 1.5 (English) to 3 (Russian) tokens per word."""
    return len(text.split())


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Exact sentences (razdel): for questions and for cutting long paragraphs."""
    end = len(text) if end is None else end
    return [(start + s.start, start + s.stop) for s in sentenize(text[start:end])]


_ROUGH_SENTENCE = re.compile(r"[^.!?…\n]+(?:[.!?…]+[»\"”)]*|\n|$)")


def rough_sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentences cut at every end mark: forty times faster than razdel and good enough where a
    wrong cut after "Mr." changes nothing (topic similarity, locating a marker's sentence)."""
    spans = []
    for match in _ROUGH_SENTENCE.finditer(text, start, len(text) if end is None else end):
        sentence = match.group()
        stripped = sentence.lstrip()
        if stripped:
            spans.append((match.end() - len(stripped), match.end()))
    return spans
