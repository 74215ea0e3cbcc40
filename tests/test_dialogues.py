"""Your own dialogues end to end: chat exports recognised by content whatever their file name, turns
as scenes, the chat form with its loss mask in `ltm build`, an initiation stage whose export stops
at the end of a turn, and a server that says when a conversation outgrew the context."""

from __future__ import annotations

import io
import json
import zipfile
import unicodedata
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, serve, write_corpus
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from ltm import stages
from ltm.dataset import SceneTable, build_dataset, load_manifest, load_split
from ltm.dataset.reader import load_masked
from ltm.markup import CHAT_TOKENS, END_OF_TURN
from ltm.dataset.tokenizer import load_tokenizer
from ltm.config import BuildConfig, RunConfig, ScenesConfig
from ltm.formats import Document
from ltm.ingest import ingest_paths
from ltm.model.export import export
from ltm.scenes import make_scenes
from ltm.serve.app import DROPPED_HEADER, create_app
from ltm.serve.chat import chat
from ltm.serve.engine import ContextError, Engine
from ltm.serve.prompt import chat_prompt, encode
from ltm.train import train
from ltm.train.initiation import initiate


def mojibake(text: str) -> str:
    """UTF-8 read as Mac Roman and saved again: what a Nexus note copied through some Mac tools holds."""
    return text.encode("utf-8").decode("mac_roman")


def nexus_note(lines: list[tuple[str, str, str]]) -> str:
    """A Nexus AI Chat Importer note: (role, local time, text) per message."""
    parts = ["---", "nexus: nexus-ai-chat-importer", "provider: chatgpt", "conversation_id: conv-1", "---", "",
             "# Title: Сцены", ""]
    for n, (role, time, text) in enumerate(lines):
        kind, label = ("user", "User") if role == "user" else ("agent", "Assistant")
        parts += [f">[!nexus_{kind}] **{label}** - {time}", *(f"> {line}" for line in text.split("\n")), f"<!-- UID: m-{n} -->", ""]
    return "\n".join(parts)


def gpt_export(conversations: list[list[tuple[str, str]]]) -> list[dict]:
    """A ChatGPT conversations.json: one linear mapping per conversation."""
    out = []
    for c, turns in enumerate(conversations):
        nodes = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
        parent = "root"
        for n, (role, text) in enumerate(turns):
            node = f"c{c}-{n}"
            nodes[node] = {"id": node, "parent": parent, "children": [], "message": {
                "id": node, "author": {"role": role}, "create_time": 1.75e9 + 60 * n, "recipient": "all", "metadata": {},
                "content": {"content_type": "text", "parts": [text]}}}
            nodes[parent]["children"].append(node)
            parent = node
        out.append({"title": f"Chat {c}", "mapping": nodes, "current_node": parent, "id": f"conv-{c}"})
    return out


def claude_export(turns: list[tuple[str, str]]) -> list[dict]:
    messages = [{"uuid": f"m{n}", "sender": "human" if role == "user" else "assistant", "text": text,
                 "content": [{"type": "text", "text": text}], "created_at": f"2025-06-21T08:{n:02d}:00.000Z"} for n, (role, text) in enumerate(turns)]
    return [{"uuid": "claude-1", "name": "Claude chat", "created_at": "2025-06-21T08:00:00Z", "chat_messages": messages}]


# --- ingest: chats by content ---------------------------------------------------------------------


def test_a_nexus_chat_saved_as_txt_with_mac_roman_mojibake_becomes_a_dialogue(tmp_path):
    note = nexus_note([
        ("user", "21.06.2025 at 8:13", mojibake("Что такое сцена?\nОбъясни коротко.")),
        ("assistant", "21.06.2025 at 8:14", mojibake("Сцена — это место, время и напряжение.") + "\nA second line, in English."),
        ("user", "21.06.2025 at 8:15", "А петля?"),  # clean: a note can be damaged in places only
        ("assistant", "21.06.2025 at 8:16", mojibake("Петля — это путь мысли от сомнения к новому направлению.")),
    ])
    (tmp_path / "chat.txt").write_text(note, encoding="utf-8")
    result = ingest_paths([tmp_path])
    assert not result.errors and len(result.documents) == 1
    doc = result.documents[0]
    assert doc.format == "nexus" and doc.lang == "ru"
    assert [t.role for t in doc.turns] == ["user", "assistant", "user", "assistant"]
    assert [t.time for t in doc.turns] == ["2025-06-21T08:13:00", "2025-06-21T08:14:00", "2025-06-21T08:15:00", "2025-06-21T08:16:00"]
    assert doc.turns[0].text == "Что такое сцена?\nОбъясни коротко."
    assert doc.turns[1].text == "Сцена — это место, время и напряжение.\nA second line, in English."
    assert doc.turns[3].text.startswith("Петля — это путь мысли")
    for markup in ("[!nexus", "UID", "<!--", "**User**", "–"):
        assert markup not in doc.text
    assert any(r.startswith("mojibake:mac_roman") for r in doc.encoding.repaired)


def test_chat_exports_are_recognised_by_content_under_any_name_and_other_files_are_skipped(tmp_path):
    chatgpt = json.dumps(gpt_export([[("user", "What is a loop?"), ("assistant", "An arc of thought.")]]))
    (tmp_path / "backup-2025.txt").write_text(chatgpt, encoding="utf-8")  # a renamed conversations.json
    (tmp_path / "conversations").write_text(json.dumps(claude_export([("user", "Hello?"), ("assistant", "Hello.")])), encoding="utf-8")
    (tmp_path / "Nexus chat").write_text(nexus_note([("user", "08/18/2025 at 10:20 AM", "Is doubt useful?"),
                                                     ("assistant", "08/18/2025 at 10:21 AM", "When it has an exit.")]), encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "takeout.zip", "w") as zf:
        zf.writestr("export/data.bin", json.dumps(gpt_export([[("user", "Inside a zip?"), ("assistant", "Found anyway.")]])))
        zf.writestr("export/README", "An ordinary note that is no chat.")
    (tmp_path / "LICENSE").write_text("Permission is hereby granted to anyone.", encoding="utf-8")
    (tmp_path / "note.md").write_text('[[JSON notes]] a key such as "mapping" names a tree.', encoding="utf-8")  # only looks like JSON
    (tmp_path / "photo.jpg").write_bytes(bytes(range(256)) * 10)
    result = ingest_paths([tmp_path])
    assert not [e for e in result.errors if e.kind == "error"]
    by_format = sorted((d.format, d.turns[0].text) for d in result.documents if d.turns)
    assert by_format == [("chatgpt", "Inside a zip?"), ("chatgpt", "What is a loop?"), ("claude", "Hello?"), ("nexus", "Is doubt useful?")]
    assert [d.format for d in result.documents if d.turns is None] == ["markdown"]
    assert sorted(Path(s).name for s in result.skipped) == ["LICENSE", "README", "photo.jpg"]


# --- scenes and the build -------------------------------------------------------------------------


def chat_scenes(tmp_path: Path, conversations: list[list[tuple[str, str]]]):
    (tmp_path / "chats.json").write_text(json.dumps(gpt_export(conversations)), encoding="utf-8")
    documents = ingest_paths([tmp_path / "chats.json"]).documents
    return documents, make_scenes(documents, ScenesConfig(min_tokens=5, max_tokens=20, link_k=0), [])


CONVERSATIONS = [[("user", f"Question {c}.{n}: why does the river {'remember' if n % 2 else 'forget'} its source?"),
                  ("assistant", f"Answer {c}.{n}: because every bend keeps a trace of the water that passed, and the trace is a story.")]
                 for c in range(4) for n in range(3)]
CONVERSATIONS = [sum(CONVERSATIONS[c * 3 : c * 3 + 3], []) for c in range(4)]


def test_scenes_of_a_dialogue_are_its_turns_whole(tmp_path):
    long_answer = " ".join(["a long answer that runs on"] * 40)  # 240 words, over max_tokens
    documents, scenes = chat_scenes(tmp_path, [[("user", "Tell me everything."), ("assistant", long_answer), ("user", "Thanks.")]])
    doc = documents[0]
    assert [(s.turn.index, s.turn.role) for s in scenes] == [(0, "user"), (1, "assistant"), (2, "user")]
    assert [s.text for s in scenes] == [turn.rendered() for turn in doc.turns]
    assert Document.model_validate(doc.model_dump(by_alias=True)).turn_spans() == [(s.span.start, s.span.end) for s in scenes]


def build_chat(tmp_path: Path, name: str, **build) -> tuple[Path, list]:
    documents, scenes = chat_scenes(tmp_path, CONVERSATIONS)
    build_dataset(SceneTable.from_scenes(scenes), BuildConfig(vocab_size=400, heldout_docs=0.3, workers=1, **build), 3, tmp_path / name)
    return tmp_path / name, documents


def test_the_chat_form_masks_exactly_the_user_turns_and_the_system_prompt(tmp_path):
    dataset, documents = build_chat(tmp_path, "chat", system_prompt="Answer in one sentence.")
    manifest = load_manifest(dataset)
    tokenizer = load_tokenizer(dataset / "tokenizer")
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in [*CHAT_TOKENS.items(), ("end", END_OF_TURN)]}
    train_docs = [d for d in documents if d.id not in manifest.heldout_docs]

    def text_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    # Every turn reads <|role|>text<|end|>; the user's turns and the system prompt are masked, whole.
    expected = sum(text_tokens("Answer in one sentence.") + 2 + sum(text_tokens(t.text) + 2 for t in d.turns if t.role == "user")
                   for d in train_docs)
    tokens = load_split(dataset, manifest, "train")
    starts, ends = load_masked(dataset, "train")
    assert int((ends - starts).sum()) == expected == manifest.stats["train"]["masked_tokens"]
    for start, end in zip(starts, ends):
        span = tokens[start:end].tolist()
        assert span[0] in (ids["user"], ids["system"]) and span[-1] == ids["end"] and ids["assistant"] not in span
    learned = np.ones(len(tokens), dtype=bool)
    for start, end in zip(starts, ends):
        learned[start:end] = False
    assert int((tokens[learned] == ids["assistant"]).sum()) == sum(t.role == "assistant" for d in train_docs for t in d.turns)

    # The tokens a dialogue trains on are the tokens the server gives the model for the same turns,
    # each conversation whole and opened by end-of-text.
    for doc in train_docs:
        messages = [{"role": "system", "content": "Answer in one sentence."}] + [{"role": t.role, "content": t.text} for t in doc.turns]
        served = [tokenizer.eos_token_id] + encode(tokenizer, chat_prompt(tokenizer, messages))[:-1]  # less the open <|assistant|>
        found = [i for i in np.flatnonzero(tokens == served[0]) if tokens[i : i + len(served)].tolist() == served]
        assert len(found) == 1, doc.id

    # learn_user_turns keeps only the system prompt masked; the text form masks nothing.
    learn_all, _ = build_chat(tmp_path, "learn-all", system_prompt="Answer in one sentence.", learn_user_turns=True)
    assert load_manifest(learn_all).stats["train"]["masked_tokens"] == len(train_docs) * (text_tokens("Answer in one sentence.") + 2)
    as_text, _ = build_chat(tmp_path, "text", dialogue="text")
    assert load_manifest(as_text).stats["train"]["masked_tokens"] == 0
    assert "User: Question" in load_tokenizer(as_text / "tokenizer").decode(load_split(as_text, load_manifest(as_text), "train")[:400])


# --- the initiation stage and the export ----------------------------------------------------------

ANSWER = "I would ask a better question."


def write_chats(folder: Path) -> Path:
    """Chats whose assistant always gives the same short answer: a tiny model can learn where a turn ends."""
    folder.mkdir(parents=True, exist_ok=True)
    words = "river stone memory doubt lantern question map silence habit measure".split()
    conversations = [[("user", f"What about the {words[c % 10]} and the {words[(c * 3 + n) % 10]}?"), ("assistant", ANSWER)] * 2
                     for c in range(8) for n in range(2)]
    (folder / "chats.json").write_text(json.dumps(gpt_export(conversations)), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def initiated(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialogues")
    config = RunConfig.model_validate(dict(
        TINY_CONFIG, ingest={"paths": [str(write_corpus(root / "corpus"))]},
        model=dict(TINY_CONFIG["model"], max_seq_len=64),
        # Every parameter: under LoRA a model this small keeps its barely trained embeddings and
        # final norm, which bound its logits too tightly to learn a reply in a test's time.
        initiation={"mode": "full", "steps": 50, "lr": 1e-2, "batch_size": 8}))
    stages.ingest(config.ingest.paths, root / "docs.jsonl")
    stages.scenes(root / "docs.jsonl", root / "scenes.jsonl", config)
    stages.build(config, root / "scenes.jsonl", root / "ds")
    checkpoint = train(config, root / "ds", root / "train")
    stages.ingest([write_chats(root / "chats")], root / "chat-docs.jsonl")
    stages.scenes(root / "chat-docs.jsonl", root / "chat-scenes.jsonl", config)
    chat_config = config.model_copy(update={"build": BuildConfig(tokenizer=str(root / "ds" / "tokenizer"), heldout_docs=0.2, workers=1)})
    stages.build(chat_config, root / "chat-scenes.jsonl", root / "ds-chat")
    out = initiate(config, checkpoint, root / "ds-chat", root / "init")
    export(out, root / "hf")
    return root


def test_initiation_on_dialogues_learns_the_assistant_turns_and_the_export_stops_at_the_end_of_a_turn(initiated):
    metrics = [json.loads(line) for line in (initiated / "init" / "metrics.jsonl").read_text().splitlines()]
    before, after = metrics[0]["heldout_loss"], metrics[-1]["heldout_loss"]
    assert metrics[0]["step"] == 0 and after < before / 2  # the held-out assistant turns, before and after

    hf = initiated / "hf"
    tokenizer = AutoTokenizer.from_pretrained(hf)
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert GenerationConfig.from_pretrained(hf).eos_token_id == [tokenizer.eos_token_id, end]
    model = AutoModelForCausalLM.from_pretrained(hf)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What about the lantern and the map?"}], tokenize=False,
                                           add_generation_prompt=True)
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)])
    out = model.generate(ids, max_new_tokens=30, do_sample=False)[0, ids.shape[1]:].tolist()
    assert out[-1] == end and len(out) < 30, tokenizer.decode(out)
    assert tokenizer.decode(out, skip_special_tokens=True).strip() == ANSWER


# --- serving a conversation longer than the context -----------------------------------------------


def test_a_chat_longer_than_the_context_drops_its_oldest_turns_and_says_so(initiated):
    engine = Engine(initiated / "hf", batch=2)
    try:
        long_chat = [{"role": "system", "content": "Be brief."}]
        for n in range(12):
            long_chat += [{"role": "user", "content": f"Question number {n} about the river?"}, {"role": "assistant", "content": ANSWER}]
        long_chat.append({"role": "user", "content": "And the last one?"})
        prompt, dropped = engine.fit_chat(long_chat, max_tokens=16)
        assert dropped > 0 and len(engine.encode(prompt)) + 1 + 16 <= engine.context
        assert prompt.startswith("<|system|>Be brief.<|end|>") and prompt.endswith("<|user|>And the last one?<|end|><|assistant|>")
        assert "Question number 0 " not in prompt  # the oldest go first
        fits, none = engine.fit_chat(long_chat[:1] + long_chat[-1:], max_tokens=16)
        assert none == 0 and fits == engine.chat_prompt(long_chat[:1] + long_chat[-1:])
        with pytest.raises(ContextError, match="shorten the message"):
            engine.fit_chat([{"role": "user", "content": "word " * 200}], max_tokens=16)

        server, url = serve(create_app(engine))
        try:
            answer = httpx.post(f"{url}/v1/chat/completions", json={"messages": long_chat, "max_tokens": 16, "temperature": 0})
            assert answer.status_code == 200 and int(answer.headers[DROPPED_HEADER]) == dropped == answer.json()["dropped_messages"]
            assert answer.json()["usage"]["prompt_tokens"] == len(engine.encode(prompt))
            streamed = httpx.post(f"{url}/v1/chat/completions", json={"messages": long_chat, "max_tokens": 16, "stream": True})
            assert int(streamed.headers[DROPPED_HEADER]) == dropped
            short = httpx.post(f"{url}/v1/chat/completions", json={"messages": long_chat[-1:], "max_tokens": 16})
            assert short.headers[DROPPED_HEADER] == "0"
            too_long = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "word " * 200}]})
            assert too_long.status_code == 400 and "context" in too_long.json()["error"]["message"]
        finally:
            server.should_exit = True
    finally:
        engine.close()


def test_a_nexus_chat_saved_as_md_has_its_mojibake_repaired_where_mac_tools_left_it_decomposed_or_mixed(tmp_path):
    # macOS tools store text decomposed (NFD): Mac Roman's 'Ä' becomes 'A' + a combining diaeresis,
    # which no code page encodes; and a line can hold clean characters (an arrow) beside the damage.
    note = nexus_note([
        ("user", "21.06.2025 at 8:13", unicodedata.normalize("NFD", mojibake("Что такое сцена? Объясни коротко."))),
        ("assistant", "21.06.2025 at 8:14", mojibake("Сцена — это место") + " → " + mojibake("и напряжение.")),
    ])
    (tmp_path / "chat.md").write_text(note, encoding="utf-8")
    result = ingest_paths([tmp_path])
    assert not result.errors, result.errors
    doc = result.documents[0]
    assert doc.format == "nexus"
    assert [t.text for t in doc.turns] == ["Что такое сцена? Объясни коротко.", "Сцена — это место → и напряжение."]
    assert any(r.startswith("mojibake:mac_roman") for r in doc.encoding.repaired)


def test_text_that_still_looks_like_mojibake_after_repair_is_kept_with_a_warning(tmp_path):
    # A lossy save replaced bytes it could not write with '?': no line decodes as UTF-8 any more.
    lossy = mojibake("Петля — это путь мысли от сомнения к новому направлению.").replace("æ", "?")
    (tmp_path / "chat.md").write_text(nexus_note([("user", "21.06.2025 at 8:13", lossy), ("assistant", "21.06.2025 at 8:14", "Yes.")]),
                                      encoding="utf-8")
    (tmp_path / "clean.md").write_text("Сцена — это место, время и «напряжение».\n\nA plain English line — with dashes.", encoding="utf-8")
    result = ingest_paths([tmp_path])
    assert len(result.documents) == 2
    warnings = [e for e in result.errors if e.kind == "warning"]
    assert [Path(e.path).name for e in warnings] == ["chat.md"]
    assert "still looks like mojibake" in warnings[0].problem


def test_ltm_chat_leaves_the_oldest_turns_out_when_the_conversation_outgrows_the_context_and_says_so(initiated):
    # A 64-token context: by the third question the conversation no longer fits; each answer still
    # has its room (max_tokens, at most a quarter of the context), and a message too long alone is not sent.
    questions = [f"Why {n}?" for n in range(6)] + ["word " * 200]
    out = io.StringIO()
    assert chat(initiated / "hf", 16, 0.0, 1.0, "Be brief.", read=io.StringIO("\n".join(questions) + "\n"), write=out) == 0
    lines = out.getvalue().splitlines()
    notes = [line for line in lines if "left out: the conversation outgrew the context" in line]
    assert notes and lines.index(notes[0]) > 2
    assert any(line.startswith("(not sent: the last message") for line in lines)
    assert lines[-1] == "bye (6 turns)"
