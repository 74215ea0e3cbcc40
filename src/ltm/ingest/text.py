"""Plain text and Markdown: bytes -> clean Unicode text and a title."""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

# Tried in order after the BOM check; cp1251 is the usual legacy code page of Russian files.
_FALLBACK_ENCODINGS = ("utf-8", "cp1251")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass
class DecodedText:
    text: str
    encoding: str
    repaired: list[str] = field(default_factory=list)


class UnreadableText(ValueError):
    pass


def decode_bytes(data: bytes) -> DecodedText:
    """Decode with a BOM if present, else the first encoding that decodes without error."""
    if b"\x00" in data[:4096] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnreadableText("looks binary (NUL bytes), not text")
    for bom, name in _BOMS:
        if data.startswith(bom):
            return DecodedText(data.decode(name), name)
    for name in _FALLBACK_ENCODINGS:
        try:
            return DecodedText(data.decode(name), name)
        except UnicodeDecodeError:
            continue
    raise UnreadableText("no known encoding decodes it")


def normalize(text: str) -> str:
    """Unix line endings, NFC, no trailing spaces, at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


def markdown_title(text: str) -> str | None:
    """The first '# ' heading, if the text starts with one (blank lines allowed before it)."""
    match = re.match(r"\s*#\s+(.+)", text)
    return match.group(1).strip() if match else None


def read_text_file(path: Path) -> tuple[str, str | None, DecodedText]:
    """Return (text, title, decoding facts) for a .txt or .md file."""
    decoded = decode_bytes(path.read_bytes())
    text = normalize(decoded.text)
    if not text.strip():
        raise UnreadableText("empty file (no text after decoding)")
    title = markdown_title(text) if path.suffix.lower() in {".md", ".markdown"} else None
    return text, title, decoded
