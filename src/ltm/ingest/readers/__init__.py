"""Readers: one module per source format, each `read(data: bytes, name: str) -> list[RawDocument]`.

A reader is picked by what the file holds where its content can tell, else by its suffix. Chat
exports are recognised by content whatever the file is called: a Nexus note saved as `.txt` or with
no suffix, a ChatGPT or Claude `conversations.json` renamed. The test looks at the file's first
SNIFF_BYTES for an ASCII marker of each chat format (two byte searches), so ordinary books pay
nothing measurable. Files in binary formats (PDF, EPUB, FB2, HTML) are read by their suffix alone.
Modules are imported on first use, so a format's dependency is only loaded when it is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ltm.ingest.raw import RawDocument, ReaderError

Reader = Callable[[bytes, str], list[RawDocument]]

SNIFF_BYTES = 64 * 1024  # what is read of a file with an unknown suffix to see whether it is a chat

# suffix -> "module:function" inside ltm.ingest.readers
_BY_SUFFIX = {
    ".txt": "text:read_text",
    ".text": "text:read_text",
    ".md": "text:read_markdown",
    ".markdown": "text:read_markdown",
    ".fb2": "fb2:read_fb2",
    ".epub": "epub:read_epub",
    ".html": "html:read_html",
    ".htm": "html:read_html",
    ".xhtml": "html:read_html",
    ".pdf": "pdf:read_pdf",
    ".json": "chat_json:read_json",
    ".jsonl": "jsonl:read_jsonl",
}
# Formats whose suffix decides: their bytes are markup or binary, never a chat export.
_BY_SUFFIX_ONLY = {".fb2", ".epub", ".html", ".htm", ".xhtml", ".pdf", ".jsonl"}
CHAT_JSON = "chat_json:read_json"
NEXUS = "text:read_text"  # the text reader finds the chat in a Nexus note (and repairs its mojibake first)


def _suffix(name: str) -> str | None:
    lowered = name.lower()
    return next((s for s in sorted(_BY_SUFFIX, key=len, reverse=True) if lowered.endswith(s)), None)  # longest first


def chat_format(head: bytes) -> str | None:
    """"module:function" of the chat reader for a file that starts with `head`, or None: a JSON
    array or object with ChatGPT's `mapping` or Claude's `chat_messages`, or a Nexus callout."""
    start = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if start.lstrip()[:1] in (b"[", b"{") and (b'"mapping"' in head or b'"chat_messages"' in head):
        return CHAT_JSON
    if b"[!nexus_" in head:
        return NEXUS
    return None


def _load(spec: str) -> Reader:
    module, function = spec.split(":")
    return getattr(importlib.import_module(f"ltm.ingest.readers.{module}"), function)


def reader_for(name: str, head: bytes | None = None) -> Reader | None:
    """The reader for a file called `name` whose first bytes are `head` (None: decide by the name
    alone). None when neither says what the file is."""
    suffix = _suffix(name)
    if suffix in _BY_SUFFIX_ONLY:
        return _load(_BY_SUFFIX[suffix])
    found = chat_format(head[:SNIFF_BYTES]) if head is not None else None
    by_suffix = _load(_BY_SUFFIX[suffix]) if suffix else None
    if found == CHAT_JSON and by_suffix is not None and _BY_SUFFIX[suffix] != CHAT_JSON:
        return _either(_load(found), by_suffix)  # a note that only looks like JSON stays a note
    return _load(found) if found else by_suffix


def _either(first: Reader, second: Reader) -> Reader:
    def read(data: bytes, name: str) -> list[RawDocument]:
        try:
            return first(data, name)
        except ReaderError:
            return second(data, name)

    return read


def needs_content(name: str) -> bool:
    """True when only the file's content can say whether ingest reads it (an unknown suffix or none)."""
    return _suffix(name) is None
