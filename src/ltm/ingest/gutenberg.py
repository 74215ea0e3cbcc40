"""Project Gutenberg files: keep the book, drop the header, footer and licence around it."""

from __future__ import annotations

import re

_START = re.compile(r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*?\*{3}\s*$", re.IGNORECASE | re.MULTILINE)
_END = re.compile(
    r"^(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$"
    r"|End of (?:the )?Project Gutenberg'?s? .*$"
    r"|End of this Project Gutenberg .*$)",
    re.IGNORECASE | re.MULTILINE,
)
_FIELD = re.compile(r"^(Title|Author|Language|Translator):\s*(.+)$", re.MULTILINE)
# Credit lines the transcribers put right after the start marker.
_PRODUCED_BY = re.compile(r"\A\s*(?:(?:Produced|Transcribed|E-?text prepared) by[^\n]*(?:\n(?!\n)[^\n]*)*\s*)", re.IGNORECASE)


def is_gutenberg(text: str) -> bool:
    return bool(_START.search(text[:20000]))


def strip_gutenberg(text: str) -> tuple[str, dict[str, str]]:
    """Return the book between the markers and the header's Title/Author/Language fields."""
    start = _START.search(text)
    if not start:
        return text, {}
    header = text[: start.start()]
    fields = {k.lower(): v.strip() for k, v in _FIELD.findall(header)}
    body = text[start.end() :]
    end = _END.search(body)
    if end:
        body = body[: end.start()]
    body = _PRODUCED_BY.sub("", body, count=1)
    return body.strip("\n"), fields
