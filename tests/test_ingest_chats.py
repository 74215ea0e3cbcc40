"""Chat readers: ChatGPT and Claude JSON exports, Nexus notes, JSON Lines; every file is written here."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ltm.ingest.raw import ReaderError
from ltm.ingest.readers import reader_for
from ltm.ingest.readers.chat_json import read_json
from ltm.ingest.readers.jsonl import read_jsonl
from ltm.ingest.readers.nexus import parse_local_time, parse_nexus


def unix(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


# --- ChatGPT --------------------------------------------------------------------------------------


def gpt_node(node_id, parent, children, role=None, parts=None, time=None, **extra):
    """One mapping node; `parts` None means a node without a message (the root)."""
    message = None
    if role is not None:
        content = extra.pop("content", {"content_type": "text", "parts": parts})
        message = {"id": node_id, "author": {"role": role, "name": None, "metadata": {}}, "create_time": time,
                   "content": content, "status": "finished_successfully", "recipient": extra.pop("recipient", "all"),
                   "metadata": extra.pop("metadata", {})}
    return node_id, {"id": node_id, "message": message, "parent": parent, "children": children}


def chatgpt_conversation() -> dict:
    """System prompt, hidden custom instructions, a regenerated answer, a tool round trip, an
    image with text, and hidden reasoning; the active branch goes through the FIRST answer."""
    nodes = dict([
        gpt_node("root", None, ["sys"]),
        gpt_node("sys", "root", ["ctx"], "system", ["You are ChatGPT, a large language model."], None),
        gpt_node("ctx", "sys", ["u1"], "user", ["CUSTOM INSTRUCTIONS: be brief"], None,
                 metadata={"is_visually_hidden_from_conversation": True}),
        gpt_node("u1", "ctx", ["a1", "a1-regen"], "user", ["What is a scene?"], unix(2025, 6, 21, 8, 13) + 0.25),
        gpt_node("a1", "u1", ["call"], "assistant", ["A scene is a unit of action.\r\n\r\n\r\n\r\nIt has a place and a time."],
                 unix(2025, 6, 21, 8, 13, 30)),
        gpt_node("a1-regen", "u1", ["u-old"], "assistant", ["REGENERATED answer that was thrown away."], unix(2025, 6, 21, 8, 14)),
        gpt_node("u-old", "a1-regen", [], "user", ["Follow-up on the abandoned branch."], unix(2025, 6, 21, 8, 15)),
        gpt_node("call", "a1", ["tool"], "assistant", None, unix(2025, 6, 21, 8, 16), recipient="python",
                 content={"content_type": "code", "language": "python", "text": "print('TOOL CALL')"}),
        gpt_node("tool", "call", ["a2"], "tool", None, unix(2025, 6, 21, 8, 16),
                 content={"content_type": "execution_output", "text": "TOOL OUTPUT"}),
        gpt_node("a2", "tool", ["u2"], "assistant", ["The code ran."], unix(2025, 6, 21, 8, 17)),
        gpt_node("u2", "a2", ["think"], "user", None, unix(2025, 6, 21, 8, 18), content={
            "content_type": "multimodal_text",
            "parts": [{"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-IMAGE", "width": 512},
                      "Look at this picture.", {"content_type": "audio_transcription", "text": "And listen to me."}]}),
        gpt_node("think", "u2", ["a3"], "assistant", None, unix(2025, 6, 21, 8, 19), content={
            "content_type": "thoughts", "thoughts": [{"summary": "Looking", "content": "HIDDEN REASONING"}]}),
        gpt_node("a3", "think", [], "assistant", ["A lighthouse at dusk."], unix(2025, 6, 21, 8, 19, 5)),
    ])
    return {"title": "Scenes  and places", "create_time": unix(2025, 6, 21, 8, 12), "update_time": unix(2025, 6, 21, 9),
            "mapping": nodes, "current_node": "a3", "conversation_id": "conv-en", "id": "conv-en"}


def chatgpt_russian() -> dict:
    nodes = dict([
        gpt_node("r0", None, ["r1"]),
        gpt_node("r1", "r0", ["r2"], "user", ["Привет! Что такое память?"], unix(2025, 1, 2, 3, 4, 5)),
        # blank-line run and a decomposed Ё: normalised
        gpt_node("r2", "r1", [], "assistant", ["Память — это рассказ.\n\n\n\nЕ\u0308ще раз: рассказ."],
                 unix(2025, 1, 2, 3, 4, 9)),
    ])
    return {"title": "О памяти", "create_time": unix(2025, 1, 2, 3, 4), "mapping": nodes, "current_node": "r2",
            "id": "conv-ru"}


def chatgpt_system_only() -> dict:
    nodes = dict([gpt_node("s0", None, ["s1"]), gpt_node("s1", "s0", [], "system", ["Only a system prompt."], None)])
    return {"title": "Empty", "create_time": None, "mapping": nodes, "current_node": "s1", "id": "conv-empty"}


def test_chatgpt_export_follows_the_active_branch_and_keeps_only_the_dialogue():
    export = [chatgpt_conversation(), chatgpt_russian(), chatgpt_system_only()]
    docs = read_json(json.dumps(export).encode("utf-8"), "conversations.json")
    assert [d.part for d in docs] == ["conv-en", "conv-ru"]  # the system-only conversation is skipped
    doc = docs[0]
    assert doc.format == "chatgpt" and doc.title == "Scenes and places"
    assert doc.meta == {"conversation_id": "conv-en", "created": "2025-06-21T08:12:00Z"}
    assert [(t.role, t.id) for t in doc.turns] == [("user", "u1"), ("assistant", "a1"), ("assistant", "a2"),
                                                   ("user", "u2"), ("assistant", "a3")]
    assert doc.turns[0].time == "2025-06-21T08:13:00Z"
    assert doc.turns[1].text == "A scene is a unit of action.\n\nIt has a place and a time."
    assert doc.turns[3].text == "Look at this picture.\n\nAnd listen to me."
    for absent in ("REGENERATED", "abandoned branch", "You are ChatGPT", "CUSTOM INSTRUCTIONS", "TOOL CALL",
                   "TOOL OUTPUT", "HIDDEN REASONING", "file-service"):
        assert absent not in doc.text
    assert doc.text == (
        "User: What is a scene?\n\n"
        "Assistant: A scene is a unit of action.\n\nIt has a place and a time.\n\n"
        "Assistant: The code ran.\n\n"
        "User: Look at this picture.\n\nAnd listen to me.\n\n"
        "Assistant: A lighthouse at dusk."
    )
    russian = docs[1]
    assert russian.text == ("User: Привет! Что такое память?\n\n"
                            "Assistant: Память — это рассказ.\n\nЁще раз: рассказ.")
    assert russian.turns[1].time == "2025-01-02T03:04:09Z"


def test_chatgpt_without_current_node_follows_the_newest_answer():
    conversation = chatgpt_conversation()
    del conversation["current_node"]
    doc = read_json(json.dumps(conversation).encode("utf-8"), "one.json")[0]  # a bare conversation object
    assert [t.id for t in doc.turns] == ["u1", "a1-regen", "u-old"]
    assert "A scene is a unit of action" not in doc.text


# --- Claude ---------------------------------------------------------------------------------------


def claude_export() -> list[dict]:
    thinking_chat = {
        "uuid": "c-1", "name": "How scenes end", "created_at": "2025-06-21T08:13:00.123456Z",
        "updated_at": "2025-06-21T08:20:00.000000Z", "account": {"uuid": "acc"},
        "chat_messages": [
            {"uuid": "m-1", "sender": "human", "text": "How do scenes end?", "created_at": "2025-06-21T08:13:05.000000Z",
             "content": [{"type": "text", "text": "How do scenes end?"}], "attachments": [], "files": []},
            {"uuid": "m-2", "sender": "assistant", "created_at": "2025-06-21T10:13:09+02:00",
             "text": "FLAT TEXT that the content blocks replace",
             "content": [
                 {"type": "thinking", "thinking": "PRIVATE THOUGHTS about endings"},
                 {"type": "text", "text": "They end when the tension resolves."},
                 {"type": "tool_use", "name": "web_search", "input": {"query": "TOOL QUERY"}},
                 {"type": "tool_result", "content": [{"type": "text", "text": "TOOL RESULT"}]},
                 {"type": "thinking", "thinking": "MORE PRIVATE THOUGHTS"},
                 {"type": "text", "text": "Or when someone leaves."},
             ]},
            {"uuid": "m-3", "sender": "human", "text": "Спасибо!", "created_at": "2025-06-21T08:14:00.000000Z"},
        ],
    }
    empty_chat = {"uuid": "c-2", "name": "", "created_at": "2025-06-22T00:00:00Z", "chat_messages": []}
    return [thinking_chat, empty_chat]


def test_claude_export_drops_thinking_and_tools_and_counts_thinking():
    docs = read_json(json.dumps(claude_export(), ensure_ascii=False).encode("utf-8"), "conversations.json")
    assert len(docs) == 1
    doc = docs[0]
    assert (doc.format, doc.title, doc.part) == ("claude", "How scenes end", "c-1")
    assert doc.meta == {"conversation_id": "c-1", "created": "2025-06-21T08:13:00Z", "thinking_blocks_dropped": 2}
    assert [(t.role, t.id, t.time) for t in doc.turns] == [
        ("user", "m-1", "2025-06-21T08:13:05Z"),
        ("assistant", "m-2", "2025-06-21T08:13:09Z"),  # converted to UTC
        ("user", "m-3", "2025-06-21T08:14:00Z"),  # no content blocks: `text` is used
    ]
    assert doc.text == ("User: How do scenes end?\n\n"
                        "Assistant: They end when the tension resolves.\n\nOr when someone leaves.\n\n"
                        "User: Спасибо!")
    for absent in ("PRIVATE THOUGHTS", "TOOL QUERY", "TOOL RESULT", "FLAT TEXT"):
        assert absent not in doc.text


def test_single_claude_conversation_through_the_registry_with_a_bom():
    reader = reader_for("Chat.JSON")
    assert reader is read_json
    data = b"\xef\xbb\xbf" + json.dumps(claude_export()[0]).encode("utf-8")
    doc = reader(data, "Chat.JSON")[0]
    assert doc.encoding == "utf-8-sig"
    assert doc.turns[0].text == "How do scenes end?"


@pytest.mark.parametrize(("payload", "problem"), [
    (json.dumps([chatgpt_russian()])[:-40], "invalid JSON: "),
    ('{"a": [1, 2,\n  }', "invalid JSON: "),
    ('{"messages": []}', "neither a ChatGPT nor a Claude export"),
    ("[1, 2, 3]", "neither a ChatGPT nor a Claude export"),
    (json.dumps([chatgpt_system_only(), claude_export()[1]]), "no conversations with text"),
])
def test_bad_json_files_raise_reader_errors(payload, problem):
    with pytest.raises(ReaderError, match=problem) as caught:
        read_json(payload.encode("utf-8"), "conversations.json")
    if problem == "invalid JSON: ":
        assert "line" in str(caught.value) and "column" in str(caught.value)


# --- Nexus notes ----------------------------------------------------------------------------------

NEXUS_DOTTED = """---
nexus: nexus-ai-chat-importer
plugin_version: "1.3.0"
provider: chatgpt
aliases:
  - Память и сцены
conversation_id: 685667a1-1234
create_time: 2025-06-21T08:13:00.000Z
update_time: 2025-06-21T08:20:00.000Z
---

# Title: Память и сцены

Created: 21.06.2025 at 8:13
Chat URL: https://chatgpt.com/c/685667a1-1234


>[!nexus_user] **User** - 21.06.2025 at 8:13
> Что такое сцена?
> Объясни коротко.
> <!-- UID: u-ru-1 -->

<br>

>[!nexus_agent] **Assistant** - 21.06.2025 at 8:14
> Сцена — это место и время.
>
>
> Второй абзац.
> <!-- UID: a-ru-1 -->

---
"""

NEXUS_AMERICAN = """---
nexus: nexus-ai-chat-importer
plugin_version: "1.2.0"
provider: chatgpt
aliases: "Lighthouse picture"
conversation_id: 68a344d8-1708
create_time: 08/18/2025 at 10:20 AM
update_time: 08/18/2025 at 1:05 PM
---

# Title: Lighthouse picture

>[!nexus_user] **User** - 08/18/2025 at 12:30 AM
> What does this picture show?

>[!nexus_attachment] **image.png** (image/png) - 2.91 MB
> ![[Nexus_attachments/chatgpt/images/image.png]]
<!-- UID: u-us-1 -->




>[!nexus_agent] **Assistant** - 08/18/2025 at 1:05 PM
> A lighthouse at dusk.
<!-- UID: a-us-1 -->

---
"""

NEXUS_ISO_ORDER = """---
nexus: nexus-ai-chat-importer
plugin_version: "1.6.8"
provider: claude
conversation_id: fc721737-41b3
create_time: 2026-05-30T15:24:12.000Z
---
# Title: Classic books

>[!nexus_user] **User** - 2026/05/30 at 23:24:12
> Which books on causality?
>
>>[!nexus_attachment] **paste.txt** (text/plain)
>> ⚠️ Not included in archive. [Open original conversation](https://claude.ai/chat/fc721737-41b3)
<!-- UID: 019e797c-5483 -->
>[!nexus_agent] **Assistant** - 2026/05/30 at 23:24:35
>  Start with Pearl.
>
> > “Correlation is not causation.”
>
> >[!nexus_artifact] **Reading list** v1
> > 🎨 [[Nexus/Attachments/claude/artifacts/reading_list_v1|View Artifact]]
>
> Then read Hernán and Robins.
<!-- UID: 019e797c-9999 -->
>[!nexus_user] **User** - 2026/05/30 at 23:26:36
> [No content found]
>>[!nexus_attachment] **image.png** (image/png)
>> ⚠️ Not included in archive.
<!-- UID: 019e797c-aaaa -->
"""


def test_nexus_note_with_dotted_dates_front_matter_and_uid_inside_the_callout():
    doc = parse_nexus(NEXUS_DOTTED)
    assert (doc.format, doc.title) == ("nexus", "Память и сцены")
    assert doc.meta == {"conversation_id": "685667a1-1234", "provider": "chatgpt",
                        "created": "2025-06-21T08:13:00Z", "updated": "2025-06-21T08:20:00Z"}
    assert [(t.role, t.id, t.time) for t in doc.turns] == [("user", "u-ru-1", "2025-06-21T08:13:00"),
                                                           ("assistant", "a-ru-1", "2025-06-21T08:14:00")]
    assert doc.text == ("User: Что такое сцена?\nОбъясни коротко.\n\n"
                        "Assistant: Сцена — это место и время.\n\nВторой абзац.")
    assert "UID" not in doc.text and "Chat URL" not in doc.text and "<br>" not in doc.text


def test_nexus_note_with_american_dates_and_a_dropped_attachment():
    doc = parse_nexus(NEXUS_AMERICAN)
    assert doc.title == "Lighthouse picture"
    assert doc.meta["created"] == "2025-08-18T10:20:00" and doc.meta["updated"] == "2025-08-18T13:05:00"
    assert [(t.role, t.id, t.time) for t in doc.turns] == [("user", "u-us-1", "2025-08-18T00:30:00"),
                                                           ("assistant", "a-us-1", "2025-08-18T13:05:00")]
    assert doc.text == "User: What does this picture show?\n\nAssistant: A lighthouse at dusk."


def test_nexus_note_with_year_first_dates_keeps_quotes_and_drops_nested_callouts():
    doc = parse_nexus(NEXUS_ISO_ORDER)
    assert doc.title == "Classic books"  # no aliases: the "# Title:" heading
    assert doc.meta["created"] == "2026-05-30T15:24:12Z"
    assert [(t.role, t.id, t.time) for t in doc.turns] == [("user", "019e797c-5483", "2026-05-30T23:24:12"),
                                                           ("assistant", "019e797c-9999", "2026-05-30T23:24:35")]
    assert doc.turns[1].text == ("Start with Pearl.\n\n> “Correlation is not causation.”\n\n"
                                 "Then read Hernán and Robins.")
    for absent in ("paste.txt", "Not included", "View Artifact", "Reading list", "No content found"):
        assert absent not in doc.text


def test_parse_local_time_forms():
    assert parse_local_time("21.06.2025 at 8:13") == "2025-06-21T08:13:00"
    assert parse_local_time("08/18/2025 at 10:20 AM") == "2025-08-18T10:20:00"
    assert parse_local_time("08/19/2025 at 1:20:09 PM") == "2025-08-19T13:20:09"
    assert parse_local_time("08/18/2025 at 12:05 PM") == "2025-08-18T12:05:00"
    assert parse_local_time("2026/05/30 at 23:24:12") == "2026-05-30T23:24:12"
    assert parse_local_time("13/45/2025 at 10:20 AM") is None
    assert parse_local_time("yesterday") is None


def test_markdown_reader_hands_nexus_notes_to_the_chat_parser_and_leaves_other_notes(tmp_path):
    note = tmp_path / "Lighthouse picture.md"
    note.write_text(NEXUS_AMERICAN, encoding="utf-8")
    reader = reader_for(note.name)
    [chat] = reader(note.read_bytes(), note.name)
    assert chat.format == "nexus" and chat.encoding == "utf-8" and len(chat.turns) == 2
    [plain] = reader(b"# A note\n\n> A quote, not a chat.\n", "note.md")
    assert plain.format == "markdown" and plain.turns is None
    assert parse_nexus("# A note\n\n> [!note] an ordinary callout\n") is None


def test_nexus_note_without_message_text_is_an_error():
    with pytest.raises(ReaderError, match="no message text"):
        parse_nexus(">[!nexus_user] **User** - 21.06.2025 at 8:13\n> [No content found]\n<!-- UID: x -->\n")


# --- JSON Lines -----------------------------------------------------------------------------------


def test_jsonl_reads_good_lines_and_records_bad_ones():
    lines = [
        json.dumps({"id": "a1", "title": "First", "author": "Ann", "lang": "en", "text": "Hello.\r\n\r\n\r\nBye.",
                    "source": "web", "score": 3, "tags": ["x"]}),
        '{"text": "broken',
        json.dumps({"content": "From content.", "views": 5}),
        json.dumps({"title": "no text here"}),
        "",
        json.dumps({"body": "Из тела.", "id": 7}, ensure_ascii=False),
        "[1, 2]",
    ]
    reader = reader_for("corpus.jsonl")
    assert reader is read_jsonl
    docs = reader("\n".join(lines).encode("utf-8"), "corpus.jsonl")
    assert [(d.part, d.text) for d in docs] == [("a1", "Hello.\n\nBye."), ("line-3", "From content."), ("7", "Из тела.")]
    first = docs[0]
    assert (first.format, first.title, first.author, first.lang) == ("jsonl", "First", "Ann", "en")
    skipped = first.meta.pop("skipped_lines")
    assert first.meta == {"source": "web", "score": 3}
    assert [s.split(":")[0] for s in skipped] == ["line 2", "line 4", "line 7"]
    assert skipped[0].startswith("line 2: invalid JSON: ")
    assert "no text field" in skipped[1] and "not a JSON object" in skipped[2]
    assert docs[1].meta == {"views": 5} and "skipped_lines" not in docs[1].meta


def test_jsonl_without_any_text_names_the_first_problem():
    with pytest.raises(ReaderError, match=r"line 1: no text field"):
        read_jsonl(b'{"title": "a"}\n{"oops"\n', "bad.jsonl")
    with pytest.raises(ReaderError, match="empty"):
        read_jsonl(b"\n\n", "blank.jsonl")
