"""Obsidian notes written by the Nexus AI Chat Importer plugin: one chat per note.

Each message is a callout whose header names the speaker and the local time, followed by the
body as `>`-quoted lines and an HTML comment holding the message id:

    >[!nexus_user] **User** - 21.06.2025 at 8:13
    > the question
    <!-- UID: 5c99de5d-... -->

The time's shape follows the locale the plugin ran in (21.06.2025 at 8:13, 08/18/2025 at
10:20 AM, 2026/05/30 at 23:24:12) and carries no zone, so turn times are written without one.
Attachments, artifacts and canvases are nested `[!nexus_...]` callouts holding links to other
files; they are dropped like image pointers and tool calls in the JSON exports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import yaml

from ltm.formats import Turn, render_turns
from ltm.ingest.raw import RawDocument, ReaderError, clean_inline
from ltm.ingest.readers.turns import normalize_iso_time, normalize_turn_text
from ltm.ingest.reflow import normalize_newlines

_MESSAGE = re.compile(r"^>\s*\[!nexus_(user|agent)\][-+]?(.*)$")
_NESTED = re.compile(r"^(?:\s*>)+\s*\[!nexus_\w+\]")
_QUOTES = re.compile(r"(?:[ \t]*>)*")
_UID = re.compile(r"^(?:>\s*)?<!--\s*UID:\s*(\S+?)\s*-->\s*$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
_HEADING = re.compile(r"^#[ \t]+(?:Title:[ \t]*)?(.+)$", re.M)
_CLOCK = r"\s+at\s+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?:\s*(?P<half>[AaPp][Mm]))?"
_DATES = [
    re.compile(r"\b(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})" + _CLOCK),
    re.compile(r"\b(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})" + _CLOCK),
    re.compile(r"\b(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})" + _CLOCK),
]
_ROLES = {"user": "user", "agent": "assistant"}
# What the plugin writes for a message whose only content was an attachment.
_PLACEHOLDERS = {"[No content found]", "[No text content]", "[No content]"}


@dataclass
class _Message:
    role: str
    time: str | None
    id: str | None = None
    lines: list[str] = field(default_factory=list)


def parse_local_time(text: str) -> str | None:
    """'21.06.2025 at 8:13', '08/18/2025 at 10:20 AM' or '2026/05/30 at 23:24:12' ->
    '2025-06-21T08:13:00' (no zone: the plugin wrote the importer's local time)."""
    for pattern in _DATES:
        match = pattern.search(text)
        if match:
            year, month, day, hour, minute = (int(match[key]) for key in "ymdHM")
            if match["half"]:
                hour = hour % 12 + (12 if match["half"].lower() == "pm" else 0)
            try:
                return datetime(year, month, day, hour, minute, int(match["S"] or 0)).isoformat()
            except ValueError:
                return None
    return None


def _front_matter(text: str) -> tuple[dict, str]:
    """The YAML header as strings (BaseLoader: no guessing of dates or numbers) and the rest."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        fields = yaml.load(match.group(1), Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        fields = None  # a broken header should not cost the chat below it
    return (fields if isinstance(fields, dict) else {}), text[match.end():]


def _first_string(value: object) -> str | None:
    """A front matter value as one clean line; of a list (aliases), the first non-empty item."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str):
        return None
    return clean_inline(value) or None


def _depth(line: str) -> int:
    return _QUOTES.match(line).group().count(">")


def _messages(lines: list[str]) -> list[_Message]:
    """The message callouts in note order, their `>` markers taken off the body lines."""
    messages: list[_Message] = []
    skipping = 0  # quote depth of the nested callout being skipped, 0 when none
    for line in lines:
        header = _MESSAGE.match(line)
        if header:
            messages.append(_Message(role=_ROLES[header.group(1)], time=parse_local_time(header.group(2))))
            skipping = 0
            continue
        if not messages:
            continue  # title, "Created:" and "Chat URL:" lines above the first message
        uid = _UID.match(line)
        if uid:
            messages[-1].id = uid.group(1)
        if uid or not line.startswith(">"):
            # Outside the callouts: the id comment, blank lines, "---" and "<br>" separators.
            skipping = 0
            continue
        depth = _depth(line)
        if skipping and depth >= skipping:
            continue  # the body of an attachment or artifact callout
        skipping = depth if _NESTED.match(line) else 0
        if not skipping:
            messages[-1].lines.append(line[2:] if line.startswith("> ") else line[1:])
    return messages


def _turns(messages: list[_Message]) -> list[Turn]:
    turns = []
    for message in messages:
        text = normalize_turn_text("\n".join(message.lines))
        if text and text not in _PLACEHOLDERS:
            turns.append(Turn(role=message.role, text=text, time=message.time, id=message.id))
    return turns


def _time_field(value: object) -> str | None:
    """Front matter times: ISO 8601 (newer plugin versions) or the callout form (older ones)."""
    if not isinstance(value, str):
        return None
    return parse_local_time(value) or normalize_iso_time(value)


def parse_nexus(text: str) -> RawDocument | None:
    """The chat in a Nexus note, or None when the text has no Nexus message callouts."""
    fields, body = _front_matter(normalize_newlines(text))
    messages = _messages(body.split("\n"))
    if not messages:
        return None
    turns = _turns(messages)
    if not turns:
        raise ReaderError("Nexus chat note with no message text")
    heading = _HEADING.search(body)
    title = (_first_string(fields.get("aliases")) or _first_string(fields.get("title"))
             or (_first_string(heading.group(1)) if heading else None))
    meta = {
        "conversation_id": _first_string(fields.get("conversation_id")),
        "provider": _first_string(fields.get("provider")),
        "created": _time_field(fields.get("create_time")),
        "updated": _time_field(fields.get("update_time")),
    }
    return RawDocument(text=render_turns(turns), format="nexus", title=title, turns=turns,
                       meta={key: value for key, value in meta.items() if value})
