"""Paragraphs from plain text as people save it: line endings normalised, hard-wrapped lines
joined, hyphenation at line ends undone, one-paragraph-per-line files given blank lines.

A block (lines between blank lines) is joined into one paragraph when it looks hard-wrapped: its
lines, but the last, fill most of a common width. A block dominated by long lines holds one
paragraph per line. Short ragged lines (verse, lists, dialogue lines) keep their line breaks.
"""

from __future__ import annotations

import re
import unicodedata

_HYPHENATED = re.compile(r"(\w)[-\u00ad]$")
_WORD_START = re.compile(r"^[a-zа-яё]")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")


def _is_hard_wrapped(lines: list[str]) -> bool:
    if len(lines) < 2:
        return False
    # A list keeps its lines; one wrapped line that happens to start "33. " does not make a list.
    if sum(1 for line in lines if _LIST_ITEM.match(line)) > max(1, 0.3 * len(lines)):
        return False
    body = [len(line.rstrip()) for line in lines[:-1]]
    width = max(body)
    if width < 40 or width > 100:  # typewriter and Gutenberg widths; longer lines are paragraphs
        return False
    return sum(n >= 0.6 * width for n in body) >= 0.8 * len(body)


def _join(lines: list[str]) -> str:
    pieces = [lines[0].strip()]
    for line in lines[1:]:
        line = line.strip()
        if _HYPHENATED.search(pieces[-1][-2:]) and _WORD_START.match(line):
            pieces[-1] = pieces[-1][:-1]  # "some-\nthing" -> "something"
        else:
            pieces.append(" ")
        pieces.append(line)
    return "".join(pieces)


def reflow(text: str) -> str:
    """Return NFC text whose paragraphs are separated by exactly one blank line."""
    text = unicodedata.normalize("NFC", normalize_newlines(text))
    paragraphs: list[str] = []
    for block in re.split(r"\n[ \t]*\n", text):
        lines = [line.rstrip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if _is_hard_wrapped(lines):
            paragraphs.append(_join(lines))
        elif len(lines) > 1 and sum(len(line) for line in lines if len(line) > 100) > 0.5 * sum(map(len, lines)):
            paragraphs.extend(line.strip() for line in lines)  # long lines dominate: one paragraph per line
        else:
            paragraphs.append("\n".join(line.strip() for line in lines))  # verse, lists, short dialogue lines
    return "\n\n".join(p for p in paragraphs if p)
