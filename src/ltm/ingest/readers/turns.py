"""What the chat readers share, so a chat reads the same whichever way it was exported: turn text
normalised and times as ISO 8601 (the turns are rendered into the text by formats.render_turns)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone

from ltm.ingest.raw import ReaderError
from ltm.ingest.reflow import normalize_newlines

_BLANK_RUNS = re.compile(r"\n{3,}")
_FRACTION = re.compile(r"\.\d+")


def normalize_turn_text(text: str) -> str:
    """A message's text: NFC, \\n line ends, no trailing spaces, at most one blank line in a row.
    Leading indentation stays: replies hold code."""
    lines = unicodedata.normalize("NFC", normalize_newlines(text)).split("\n")
    return _BLANK_RUNS.sub("\n\n", "\n".join(line.rstrip() for line in lines)).strip()


def decode_utf8(data: bytes) -> tuple[str, str]:
    """JSON is UTF-8 by definition; a BOM is tolerated. Returns (text, encoding)."""
    encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        raise ReaderError(f"not UTF-8: bad byte at offset {exc.start}") from exc


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_unix(seconds: object) -> str | None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    try:
        return _utc(datetime.fromtimestamp(seconds, tz=timezone.utc))
    except (OverflowError, OSError, ValueError):  # NaN or out of range: no time rather than no file
        return None


def normalize_iso_time(value: object) -> str | None:
    """Claude's "2025-06-21T08:13:00.123456Z" -> "2025-06-21T08:13:00Z" (UTC, whole seconds); a
    time without a zone stays without one; None for what is not ISO 8601."""
    if not isinstance(value, str) or not value:
        return None
    # Python 3.10's fromisoformat takes neither "Z" nor every fraction length.
    try:
        moment = datetime.fromisoformat(_FRACTION.sub("", value, count=1).replace("Z", "+00:00"))
    except ValueError:
        return None
    return _utc(moment) if moment.tzinfo else moment.isoformat(timespec="seconds")
