"""JSON Lines files: one document per line, as datasets and scrapers write them.

A line is an object whose text is in "text", "content" or "body" (the first present is used);
"title", "author", "id" and "lang" fill the document's fields and other scalar fields go to its
meta. A bad line does not cost the file: it is skipped and listed in the first document's
meta["skipped_lines"].
"""

from __future__ import annotations

import json

from ltm.ingest.raw import RawDocument, ReaderError, clean_inline
from ltm.ingest.readers.turns import decode_utf8, normalize_turn_text
from ltm.io import json_problem

_TEXT_FIELDS = ("text", "content", "body")
_FIELDS = {*_TEXT_FIELDS, "title", "author", "id", "lang"}


def _string(record: dict, key: str) -> str | None:
    value = record.get(key)
    if not isinstance(value, str):
        return None
    return clean_inline(value) or None


def _part(value: object, number: int) -> str:
    """The line's id when it has one (a string or a number), else its line number."""
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    return f"line-{number}"


def _document(line: str, number: int) -> RawDocument:
    """The line's document; ReaderError says why the line is unusable."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReaderError(f"invalid JSON: {json_problem(exc)}") from exc
    if not isinstance(record, dict):
        raise ReaderError("not a JSON object")
    key = next((k for k in _TEXT_FIELDS if isinstance(record.get(k), str)), None)
    if key is None:
        raise ReaderError("no text field (text, content or body)")
    text = normalize_turn_text(record[key])
    if not text:
        raise ReaderError(f"empty {key!r}")
    meta = {k: v for k, v in record.items() if k not in _FIELDS and isinstance(v, (str, int, float, bool))}
    return RawDocument(text=text, format="jsonl", title=_string(record, "title"), author=_string(record, "author"),
                       lang=_string(record, "lang"), meta=meta, part=_part(record.get("id"), number))


def read_jsonl(data: bytes, name: str) -> list[RawDocument]:
    text, encoding = decode_utf8(data)
    docs, skipped = [], []
    # Split on "\n" only: str.splitlines would also break at U+2028, which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            docs.append(_document(line, number))
        except ReaderError as exc:
            skipped.append(f"line {number}: {exc}")
    if not docs:
        raise ReaderError(f"no line with text ({skipped[0]})" if skipped else "empty: no JSON lines")
    for doc in docs:
        doc.encoding = encoding
    if skipped:
        docs[0].meta["skipped_lines"] = skipped
    return docs
