"""Scene memory: the store (search, namespaces, crash safety) and its HTTP API, across a restart."""

import json

import httpx
import jsonschema
import pytest
from conftest import ScriptedEngine, serve
from openai import OpenAI

from ltm.formats import json_schema
from ltm.serve import memory as memory_module
from ltm.serve.app import create_app
from ltm.serve.engine import Engine
from ltm.serve.memory import LEGACY_INDEX, RECORDS, ROW, VECTORS, MemoryStore

MEASURE = "THEON: Can a thing be measured without being changed? When I weigh a stone, the scale presses back."
MEMORY_RU = "ЛИДА: Значит, часть картины — это рассказ, а не память. Что ты помнишь о море?"
WEATHER = "The weather was cold and the sea was grey all week."


def test_the_store_finds_related_scenes_lists_newest_first_and_deletes(tmp_path):
    store = MemoryStore(tmp_path)
    first, second, third = (store.add("study", text, {"n": i}) for i, text in enumerate((MEASURE, MEMORY_RU, WEATHER)))
    assert [h.id for h in store.search("study", "is a stone changed by measuring it on a scale?", 3)][0] == first.id
    assert store.search("study", "память и рассказ о море", 1)[0].id == second.id
    assert store.search("study", MEASURE, 1)[0].score == pytest.approx(1.0, abs=1e-4)
    assert [r.id for r in store.list("study")] == [third.id, second.id, first.id]
    assert [r.id for r in store.list("study", limit=1)] == [third.id]
    assert store.search("elsewhere", MEASURE, 3) == [] and store.list("elsewhere") == []
    assert store.delete("study", first.id) and not store.delete("study", first.id)
    assert first.id not in [h.id for h in store.search("study", MEASURE, 3)]
    assert store.search("study", MEMORY_RU, 1)[0].meta == {"n": 1}  # what is left, meta intact


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", ".hidden", "", "x" * 65, "name with space"])
def test_a_namespace_cannot_leave_the_memory_folder(tmp_path, name):
    store = MemoryStore(tmp_path / "memory")
    with pytest.raises(ValueError, match="namespace"):
        store.add(name, "text")
    assert not (tmp_path / "outside").exists() and list(tmp_path.iterdir()) in ([], [tmp_path / "memory"])


def test_a_crash_between_the_two_writes_is_mended_when_the_namespace_is_loaded(tmp_path, monkeypatch):
    store = MemoryStore(tmp_path)
    kept = store.add("study", MEASURE)
    append = memory_module._append

    def crash_on_vectors(path, data):
        if path.name == VECTORS:
            raise OSError("disk full")
        append(path, data)

    monkeypatch.setattr(memory_module, "_append", crash_on_vectors)  # the record is appended, then the vector's append fails
    with pytest.raises(OSError):
        store.add("study", MEMORY_RU)
    monkeypatch.undo()
    lines = (tmp_path / "study" / RECORDS).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # the records are the truth; the vectors still hold only the first one
    for reopened in (store, MemoryStore(tmp_path)):
        assert [h.text for h in reopened.search("study", "рассказ и память", 2)][0] == MEMORY_RU
    (tmp_path / "study" / VECTORS).write_bytes(b"not vectors")
    assert MemoryStore(tmp_path).search("study", MEASURE, 1)[0].id == kept.id


def test_an_add_appends_to_both_files_and_a_torn_append_is_mended(tmp_path):
    store = MemoryStore(tmp_path)
    for i in range(3):
        store.add("study", f"{WEATHER} ({i})")
    records, vectors = tmp_path / "study" / RECORDS, tmp_path / "study" / VECTORS
    before = {path: (path.stat().st_ino, path.read_bytes()) for path in (records, vectors)}
    added = store.add("study", MEASURE)
    for path, (inode, content) in before.items():  # the same files, grown: nothing rewritten
        assert path.stat().st_ino == inode and path.read_bytes().startswith(content)
    assert records.read_bytes()[len(before[records][1]):].decode("utf-8").count("\n") == 1
    assert len(vectors.read_bytes()) - len(before[vectors][1]) == ROW.itemsize
    # kill -9 in the middle of the next add: half a line and half a row at the ends.
    with open(records, "ab") as handle:
        handle.write(b'{"schema": "ltm.memory/1", "id": 12, "te')
    with open(vectors, "ab") as handle:
        handle.write(b"\0" * 100)
    reopened = MemoryStore(tmp_path)
    assert [r.id for r in reopened.list("study")][0] == added.id and len(reopened.list("study")) == 4
    assert reopened.search("study", MEASURE, 1)[0].id == added.id
    assert records.read_bytes().endswith(b"\n") and len(vectors.read_bytes()) == 4 * ROW.itemsize
    newer = reopened.add("study", MEMORY_RU)
    assert [r.id for r in MemoryStore(tmp_path).list("study", 2)] == [newer.id, added.id]


def test_a_namespace_written_by_an_earlier_version_gets_its_vectors(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    record = {"schema": "ltm.memory/1", "id": 7, "text": MEASURE, "meta": {}, "created": 1.0}
    (folder / RECORDS).write_text(json.dumps(record) + "\n", encoding="utf-8")
    (folder / LEGACY_INDEX).write_bytes(b"a FAISS index, rewritten on every add")
    assert MemoryStore(tmp_path).search("study", MEASURE, 1)[0].id == 7
    assert not (folder / LEGACY_INDEX).exists() and len((folder / VECTORS).read_bytes()) == ROW.itemsize


def test_the_memory_api_keeps_scenes_across_a_server_restart(tmp_path):
    server, url = serve(create_app(ScriptedEngine(lambda prompt: ""), memory=MemoryStore(tmp_path)))
    try:
        added = [httpx.post(f"{url}/v1/memory", json={"namespace": "study", "text": text, "meta": {"source": "test"}}).json()
                 for text in (MEASURE, MEMORY_RU, WEATHER)]
        assert [a["text"] for a in added] == [MEASURE, MEMORY_RU, WEATHER] and added[0]["schema"] == "ltm.memory/1"
        listed = httpx.get(f"{url}/v1/memory", params={"namespace": "study", "limit": 2}).json()["records"]
        assert [r["id"] for r in listed] == [added[2]["id"], added[1]["id"]]
        assert httpx.delete(f"{url}/v1/memory/study/{added[2]['id']}").json() == {"deleted": True}
        assert httpx.delete(f"{url}/v1/memory/study/{added[2]['id']}").status_code == 404
        assert httpx.post(f"{url}/v1/memory", json={"namespace": "../up", "text": "x"}).status_code == 400
        assert httpx.get(f"{url}/v1/memory/search", params={"namespace": "a.b", "q": "x"}).status_code == 400
        assert httpx.post(f"{url}/v1/memory", json={"namespace": "study", "text": ""}).status_code == 400
    finally:
        server.should_exit = True
    for line in (tmp_path / "study" / RECORDS).read_text(encoding="utf-8").splitlines():
        jsonschema.validate(json.loads(line), json_schema("memory"))

    server, url = serve(create_app(ScriptedEngine(lambda prompt: ""), memory=MemoryStore(tmp_path)))
    try:
        found = httpx.get(f"{url}/v1/memory/search", params={"namespace": "study", "q": "measuring a stone on a scale", "k": 5}).json()
        results = found["results"]
        assert [r["id"] for r in results][0] == added[0]["id"] and len(results) == 2
        assert set(results[0]) == {"id", "score", "text", "meta", "created"}
        assert results[0]["meta"] == {"source": "test"} and results[0]["text"] == MEASURE
    finally:
        server.should_exit = True


def test_chat_and_completions_recall_earlier_scenes_and_are_remembered(tmp_path):
    engine = ScriptedEngine(lambda prompt: "A stone stays a stone.")
    server, url = serve(create_app(engine, memory=MemoryStore(tmp_path)))
    try:
        chat = {"messages": [{"role": "user", "content": "Can a stone be measured without being changed?"}], "namespace": "study"}
        assert httpx.post(f"{url}/v1/chat/completions", json=chat).status_code == 200
        assert "Related earlier scenes" not in engine.calls[-1]["prompt"]  # nothing to recall yet
        records = httpx.get(f"{url}/v1/memory", params={"namespace": "study"}).json()["records"]
        assert records[0]["text"] == "User: Can a stone be measured without being changed?\nAssistant: A stone stays a stone."
        assert records[0]["meta"] == {"kind": "chat", "model": "scripted"}

        again = {"messages": [{"role": "user", "content": "Is a measured stone changed?"}], "namespace": "study", "stream": True}
        assert httpx.post(f"{url}/v1/chat/completions", json=again).text.rstrip().endswith("[DONE]")
        prompt = engine.calls[-1]["prompt"]
        assert prompt.startswith("<|system|>Related earlier scenes:\n- User: Can a stone be measured")
        assert len(httpx.get(f"{url}/v1/memory", params={"namespace": "study"}).json()["records"]) == 2  # streamed, then stored

        httpx.post(f"{url}/v1/completions", json={"prompt": "THEON: a stone", "namespace": "study", "memory_k": 1})
        assert engine.calls[-1]["prompt"].startswith("Related earlier scenes:\n- ") and engine.calls[-1]["prompt"].endswith("THEON: a stone")
        assert engine.calls[-1]["prompt"].count("\n- ") == 1  # memory_k
        assert httpx.get(f"{url}/v1/memory", params={"namespace": "study"}).json()["records"][0]["text"] == "THEON: a stoneA stone stays a stone."

        httpx.post(f"{url}/v1/chat/completions", json={"messages": chat["messages"], "namespace": "study", "memory_k": 0})
        assert "<|system|>" not in engine.calls[-1]["prompt"]
        httpx.post(f"{url}/v1/chat/completions", json={"messages": chat["messages"]})  # no namespace: nothing recalled or stored
        assert "<|system|>" not in engine.calls[-1]["prompt"]
        assert len(httpx.get(f"{url}/v1/memory", params={"namespace": "study"}).json()["records"]) == 4
        assert httpx.post(f"{url}/v1/chat/completions", json={**chat, "namespace": "../x"}).status_code == 400
    finally:
        server.should_exit = True


def test_a_server_without_memory_refuses_namespaces(tmp_path):
    server, url = serve(create_app(ScriptedEngine(lambda prompt: "x")))
    try:
        refused = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "namespace": "study"})
        assert refused.status_code == 400 and "memory" in refused.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/memory", params={"namespace": "study"}).status_code == 404
        assert httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    finally:
        server.should_exit = True


def test_the_tiny_model_remembers_a_chat_through_the_openai_client(exported, tmp_path):
    server, url = serve(create_app(Engine(exported), memory=MemoryStore(tmp_path)))
    try:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused")
        reply = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "Помним ли мы прошлое?"}], max_tokens=6,
                                               seed=1, extra_body={"namespace": "diary"})
        records = httpx.get(f"{url}/v1/memory", params={"namespace": "diary"}).json()["records"]
        assert records[0]["text"] == f"User: Помним ли мы прошлое?\nAssistant: {reply.choices[0].message.content}"
    finally:
        server.should_exit = True
