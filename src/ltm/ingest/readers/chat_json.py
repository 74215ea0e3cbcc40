"""ChatGPT and Claude `conversations.json` exports: one document per conversation.

Both exports are a list of conversations (a single conversation object is accepted too); the
structure tells them apart: ChatGPT conversations carry a `mapping` tree, Claude ones a
`chat_messages` list. Only what the user and the assistant said to each other is kept: system and
tool messages, hidden messages, tool calls, image pointers and Claude's thinking are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ltm.formats import Turn, render_turns
from ltm.ingest.raw import RawDocument, ReaderError, clean_inline
from ltm.ingest.readers.turns import decode_utf8, from_unix, normalize_iso_time, normalize_turn_text
from ltm.io import json_problem


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- ChatGPT --------------------------------------------------------------------------------------


def _active_branch(mapping: dict, current: object) -> list[dict]:
    """Nodes from the root to `current_node`, the branch the user last saw; regenerated answers
    sit on sibling branches and are left out. Without a usable `current_node`, the newest child
    (the last one) is followed down from the root."""
    if _known(current, mapping):
        return _walk(current, lambda node: node.get("parent"), mapping)[::-1]
    roots = [node_id for node_id, node in mapping.items() if not _known(node.get("parent"), mapping)]
    return _walk(roots[0], _last_child, mapping) if roots else []


def _known(node_id: object, mapping: dict) -> bool:
    return isinstance(node_id, str) and node_id in mapping


def _last_child(node: dict) -> object:
    children = node.get("children")
    return children[-1] if isinstance(children, list) and children else None


def _walk(start: object, step: Callable[[dict], object], mapping: dict) -> list[dict]:
    path, seen, node_id = [], set(), start
    while _known(node_id, mapping) and node_id not in seen:  # `seen` guards against a cyclic file
        seen.add(node_id)
        path.append(mapping[node_id])
        node_id = step(mapping[node_id])
    return path


def _chatgpt_text(content: dict) -> str:
    """Text and multimodal messages keep their string parts (and dict parts with a "text", such
    as audio transcriptions); image pointers go. Other content types (code, execution output,
    browsing results, reasoning) count only when they carry a plain `text` string."""
    parts = content.get("parts")
    if isinstance(parts, list):
        texts = [p if isinstance(p, str) else p.get("text") for p in parts if isinstance(p, (str, dict))]
        return "\n\n".join(t for t in texts if isinstance(t, str) and t.strip())
    return content["text"] if isinstance(content.get("text"), str) else ""


def _chatgpt_turn(message: object) -> Turn | None:
    if not isinstance(message, dict):
        return None
    author, metadata = message.get("author"), message.get("metadata")
    role = author.get("role") if isinstance(author, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    hidden = metadata.get("is_visually_hidden_from_conversation")
    # A message addressed to a tool (recipient "python", "dalle.text2im", ...) is a tool call.
    if role not in ("user", "assistant") or hidden or message.get("recipient", "all") != "all":
        return None
    content = message.get("content")
    text = normalize_turn_text(_chatgpt_text(content)) if isinstance(content, dict) else ""
    if not text:
        return None
    return Turn(role=role, text=text, time=from_unix(message.get("create_time")), id=_string(message.get("id")))


def _chatgpt_document(conversation: dict, index: int) -> RawDocument | None:
    mapping = {key: node for key, node in conversation["mapping"].items() if isinstance(node, dict)}
    branch = _active_branch(mapping, conversation.get("current_node"))
    turns = [turn for turn in (_chatgpt_turn(node.get("message")) for node in branch) if turn]
    conversation_id = conversation.get("conversation_id") or conversation.get("id")
    created = from_unix(conversation.get("create_time"))
    return _document("chatgpt", turns, conversation.get("title"), conversation_id, created, index)


# --- Claude ---------------------------------------------------------------------------------------


def _claude_turn(message: dict) -> tuple[Turn | None, int]:
    """The turn (or None when nothing is left) and how many thinking blocks were dropped."""
    role = {"human": "user", "assistant": "assistant"}.get(message.get("sender"))
    content = message.get("content")
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    thinking = sum(b.get("type") == "thinking" for b in blocks)
    if blocks:
        # Thinking is not the reply; tool_use and tool_result blocks are machinery.
        texts = [_string(b.get("text")) for b in blocks if b.get("type") == "text"]
        text = normalize_turn_text("\n\n".join(t for t in texts if t))
    else:
        text = normalize_turn_text(_string(message.get("text")) or "")
    if role is None or not text:
        return None, thinking
    time = normalize_iso_time(message.get("created_at"))
    return Turn(role=role, text=text, time=time, id=_string(message.get("uuid"))), thinking


def _claude_document(conversation: dict, index: int) -> RawDocument | None:
    turns, thinking = [], 0
    for message in conversation.get("chat_messages") or []:
        if isinstance(message, dict):
            turn, dropped = _claude_turn(message)
            thinking += dropped
            turns += [turn] if turn else []
    doc = _document("claude", turns, conversation.get("name"), conversation.get("uuid"),
                    normalize_iso_time(conversation.get("created_at")), index)
    if doc is not None and thinking:
        doc.meta["thinking_blocks_dropped"] = thinking
    return doc


# --- both -----------------------------------------------------------------------------------------


def _document(format: str, turns: list[Turn], title: object, conversation_id: object, created: str | None,
              index: int) -> RawDocument | None:
    if not turns:
        return None
    conversation_id = str(conversation_id) if conversation_id else None
    meta = {"conversation_id": conversation_id, "created": created}
    part = conversation_id or f"conversation-{index + 1}"
    title = clean_inline(title) if isinstance(title, str) else ""
    return RawDocument(text=render_turns(turns), format=format, title=title or None, turns=turns, part=part, meta=meta)


def _builder(conversation: object) -> Callable[[dict, int], RawDocument | None] | None:
    if isinstance(conversation, dict):
        if isinstance(conversation.get("mapping"), dict):
            return _chatgpt_document
        if isinstance(conversation.get("chat_messages"), list):
            return _claude_document
    return None


def read_json(data: bytes, name: str) -> list[RawDocument]:
    text, encoding = decode_utf8(data)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReaderError(f"invalid JSON: {json_problem(exc)}") from exc
    conversations = parsed if isinstance(parsed, list) else [parsed]
    builders = [_builder(c) for c in conversations]
    if conversations and not any(builders):
        raise ReaderError("JSON is neither a ChatGPT nor a Claude export (expected a list of conversations "
                          "with a 'mapping' tree or a 'chat_messages' list)")
    built = (build(conversation, index) for index, (conversation, build) in enumerate(zip(conversations, builders)) if build)
    docs = [doc for doc in built if doc is not None]
    if not docs:
        raise ReaderError("no conversations with text")
    for doc in docs:
        doc.encoding = encoding
    return docs
