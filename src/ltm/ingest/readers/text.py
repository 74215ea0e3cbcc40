"""Plain text and Markdown files (Project Gutenberg files included), and Nexus chat notes whatever
their suffix."""

from __future__ import annotations

import re

from ltm.ingest.decode import decode
from ltm.ingest.gutenberg import is_gutenberg, strip_gutenberg
from ltm.ingest.mojibake import repair
from ltm.ingest.raw import RawDocument, ReaderError
from ltm.ingest.readers import NEXUS, SNIFF_BYTES, chat_format
from ltm.ingest.readers.nexus import parse_nexus
from ltm.ingest.reflow import normalize_newlines, reflow

_HEADING = re.compile(r"\A\s*#\s+(.+)")


def _read(data: bytes, format: str) -> RawDocument:
    decoded = decode(data)
    text, repaired = repair(normalize_newlines(decoded.text))
    # A chat saved by the Nexus AI Chat Importer plugin? Its callout marker is ASCII, so the byte
    # test holds in any ASCII-compatible encoding; the chat is parsed after the mojibake repair.
    if chat_format(data[:SNIFF_BYTES]) == NEXUS:
        chat = parse_nexus(text)
        if chat is not None:
            chat.encoding, chat.repaired = decoded.encoding, repaired
            return chat
    meta, title, author, lang = {}, None, None, None
    if is_gutenberg(text):
        text, fields = strip_gutenberg(text)
        title, author = fields.get("title"), fields.get("author")
        lang = {"english": "en", "russian": "ru"}.get(fields.get("language", "").lower())
        meta["gutenberg"] = True
        repaired = repaired + ["gutenberg:boilerplate removed"]
    text = reflow(text)
    if not text.strip():
        raise ReaderError("empty: no text after decoding")
    if format == "markdown" and title is None:
        match = _HEADING.match(text)
        title = match.group(1).strip() if match else None
    return RawDocument(text=text, format=format, title=title, author=author, lang=lang, meta=meta,
                       encoding=decoded.encoding, repaired=repaired)


def read_text(data: bytes, name: str) -> list[RawDocument]:
    return [_read(data, "text")]


def read_markdown(data: bytes, name: str) -> list[RawDocument]:
    return [_read(data, "markdown")]
