"""Readers: one module per source format, each `read(data: bytes, name: str) -> list[RawDocument]`.

The registry picks a reader by file suffix; a few suffixes hold several formats (a `.json` may be a
ChatGPT or a Claude export, a `.md` may be a Nexus chat note), and those readers decide by content.
Modules are imported on first use, so a format's dependency is only loaded when it is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ltm.ingest.raw import RawDocument

Reader = Callable[[bytes, str], list[RawDocument]]

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


def supported_suffixes() -> set[str]:
    return set(_BY_SUFFIX)


def reader_for(name: str) -> Reader | None:
    lowered = name.lower()
    for suffix in sorted(_BY_SUFFIX, key=len, reverse=True):  # longest first: ".fb2.zip" before ".zip"
        if lowered.endswith(suffix):
            module, function = _BY_SUFFIX[suffix].split(":")
            return getattr(importlib.import_module(f"ltm.ingest.readers.{module}"), function)
    return None
