"""/v1/scenes: structured scene queries (PVQ) parsed, validated, retried, repaired and critiqued."""

import re

import httpx
import pytest
import yaml
from conftest import ScriptedEngine, serve

from ltm.formats import Role
from ltm.serve.app import MAX_TOKENS, create_app
from ltm.serve.engine import Engine
from ltm.serve.memory import MemoryStore
from ltm.serve.pvq import NO_ANSWER, TRIES, SceneRequest, SceneResponse, answer_scene, parse_roles, parse_sections

WELL_FORMED = """ THEON (doubt), MIRA (objector)
TENSION: measuring <-> changing
VECTOR: toward a measure that leaves the thing as it was
RESPONSE: A stone presses back on the scale and stays a stone. A feeling moves when it is named.
CONCLUSION: Only what presses back can be measured unchanged.
COMMENTARY: I began with the stone and turned to the feeling.
SCENE: the model starting a new query"""
QUERY = {"scene": "THEON weighs a stone on the scale.", "tension": "rest <-> the wish to break through",
         "vector": "toward awareness", "question": "Can a feeling be measured?", "seed": 7}


def test_a_well_formed_generation_is_parsed_not_repaired():
    sections = parse_sections("ROLES:" + WELL_FORMED)
    assert sections["tension"] == "measuring <-> changing" and sections["conclusion"].startswith("Only what")
    assert "new query" not in sections["commentary"]  # a query label ends the section before it
    assert parse_roles(sections["roles"]) == [Role(name="THEON", function="doubt"), Role(name="MIRA", function="objector")]

    engine = ScriptedEngine(lambda prompt: WELL_FORMED)
    answer = answer_scene(engine, SceneRequest(**QUERY, archetype="trickster"))
    assert not answer.repaired and answer.usage.generations == 1
    assert answer.meta_scene.roles[0].name == "THEON" and answer.meta_scene.vector.startswith("toward a measure")
    assert answer.response == "A stone presses back on the scale and stays a stone. A feeling moves when it is named."
    assert answer.commentary == "I began with the stone and turned to the feeling." and answer.critiques == []
    prompt = engine.calls[0]["prompt"]
    assert prompt.startswith("<|scene|><|lens:scene|><|header|><|tension:") and prompt.endswith("<|body|>ROLES:")
    assert re.sub(r"<\|[^|]+\|>", "\n", prompt).strip().splitlines() == [
        f"SCENE: {QUERY['scene']}", f"TENSION: {QUERY['tension']}", f"VECTOR: {QUERY['vector']}", "ARCHETYPE: trickster",
        f"QUESTION: {QUERY['question']}", "ANSWER WITH: ROLES, TENSION, VECTOR, RESPONSE, CONCLUSION, COMMENTARY", "ROLES:"]


def test_garbage_is_tried_again_with_another_seed_then_repaired_into_a_whole_scene():
    engine = ScriptedEngine(lambda prompt: " ,, stone the the. MIRA: feeling scale. moves and named")
    answer = answer_scene(engine, SceneRequest(**QUERY, archetype="trickster", lens="child"))
    assert [c["seed"] for c in engine.calls] == [7, 8][:TRIES]
    assert answer.repaired
    names = [role.name for role in answer.meta_scene.roles]
    assert "MIRA" in names and "trickster" in names  # the annotator's speaker and the query's archetype
    assert answer.meta_scene.tension == QUERY["tension"]  # no poles in the text: the query's own tension
    assert answer.meta_scene.vector == QUERY["vector"] and answer.meta_scene.lens == "child"
    assert answer.response == ",, stone the the. MIRA: feeling scale. moves and named"
    assert answer.conclusion == "moves and named"  # the last sentence
    assert answer.commentary and "trickster" in answer.commentary  # the annotation read back as a scene header
    SceneResponse.model_validate(answer.model_dump())


def test_a_second_try_that_parses_is_used_and_an_empty_answer_is_still_a_scene():
    replies = iter(["", WELL_FORMED])
    answer = answer_scene(ScriptedEngine(lambda prompt: next(replies)), SceneRequest(**QUERY))
    assert not answer.repaired and answer.usage.generations == 2 and answer.conclusion.startswith("Only what")

    # The prompt opens the ROLES line, so a lone word the model writes is its response, not a role.
    word = answer_scene(ScriptedEngine(lambda prompt: " t"), SceneRequest(**QUERY))
    assert word.repaired and word.response == "t" and "t" not in [role.name for role in word.meta_scene.roles]

    empty = answer_scene(ScriptedEngine(lambda prompt: ""), SceneRequest(**QUERY, commentary=False))
    assert empty.repaired and empty.response == NO_ANSWER == empty.conclusion and empty.commentary is None
    assert empty.meta_scene.roles and empty.meta_scene.tension and empty.meta_scene.vector


def test_critic_rounds_critique_then_revise():
    def reply(prompt: str) -> str:
        if prompt.startswith("<|scene|><|lens:critic|>"):
            return " The feeling part is only asserted."
        if "REVISE:" in prompt:
            return f" Naming a feeling moves it ({prompt.count('CRITIQUE:')}). So it cannot be measured unchanged.\nCONCLUSION: Not unchanged."
        return WELL_FORMED

    engine = ScriptedEngine(reply)
    answer = answer_scene(engine, SceneRequest(**QUERY, critic_rounds=2))
    critique = "The feeling part is only asserted."
    assert [(c.round, c.critique, c.revised) for c in answer.critiques] == [(1, critique, True), (2, critique, True)]
    assert answer.response == "Naming a feeling moves it (1). So it cannot be measured unchanged." and answer.conclusion == "Not unchanged."
    critic_prompts = [c["prompt"] for c in engine.calls if c["prompt"].startswith("<|scene|><|lens:critic|>")]
    assert "<|body|>Naming a feeling moves it" in critic_prompts[1]  # round two critiques round one's revision
    assert answer.usage.generations == 5 and not answer.repaired


@pytest.fixture
def scripted_server(tmp_path):
    engine = ScriptedEngine(lambda prompt: WELL_FORMED)
    server, url = serve(create_app(engine, memory=MemoryStore(tmp_path)))
    yield engine, url
    server.should_exit = True


def test_json_and_yaml_queries_and_bad_bodies(scripted_server):
    engine, url = scripted_server
    as_json = httpx.post(f"{url}/v1/scenes", json=QUERY)
    as_yaml = httpx.post(f"{url}/v1/scenes", content=yaml.safe_dump(QUERY), headers={"content-type": "application/yaml"})
    assert as_json.status_code == as_yaml.status_code == 200
    assert {k: v for k, v in as_json.json().items() if k != "id"} == {k: v for k, v in as_yaml.json().items() if k != "id"}
    body = SceneResponse.model_validate(as_json.json())
    assert body.object == "scene" and body.model == "scripted" and not body.repaired and body.memory == []

    def refused(content, content_type="application/json"):
        response = httpx.post(f"{url}/v1/scenes", content=content, headers={"content-type": content_type})
        assert response.status_code == 400, response.text
        return response.json()["error"]["message"]

    assert "YAML" in refused("scene: [unclosed", "text/yaml")
    assert "JSON" in refused("{not json")
    assert "mapping" in refused("- a list\n- of things", "application/x-yaml")
    assert "question" in refused(yaml.safe_dump({"scene": "x"}), "text/yaml")
    assert "critic_rounds" in refused(yaml.safe_dump({**QUERY, "critic_rounds": 4}), "application/yaml")
    assert "lens" in refused(yaml.safe_dump({**QUERY, "lens": "dream"}), "application/yaml")
    assert "questoin" in refused(yaml.safe_dump({**QUERY, "questoin": "typo"}), "application/yaml")
    assert "namespace" in refused(yaml.safe_dump({**QUERY, "namespace": "../up"}), "application/yaml")
    over = httpx.post(f"{url}/v1/scenes", json={**QUERY, "max_tokens": MAX_TOKENS + 1})
    assert over.status_code == 400 and "limit" in over.json()["error"]["message"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_a_namespace_recalls_earlier_scenes_into_a_memory_section(scripted_server):
    engine, url = scripted_server
    first = httpx.post(f"{url}/v1/scenes", json={**QUERY, "namespace": "study"}).json()
    assert first["memory"] == []
    second = httpx.post(f"{url}/v1/scenes", json={**QUERY, "question": "Can a stone be weighed?", "namespace": "study"}).json()
    assert [m["text"].splitlines()[0] for m in second["memory"]] == [f"Scene: {QUERY['scene']}"]
    assert "\nMEMORY:\n- Scene: THEON weighs a stone" in engine.calls[-1]["prompt"]
    stored = httpx.get(f"{url}/v1/memory", params={"namespace": "study"}).json()["records"]
    assert [r["meta"]["id"] for r in stored] == [second["id"], first["id"]] and stored[1]["meta"]["kind"] == "scene"


def test_the_tiny_model_answers_with_a_whole_scene(exported, tmp_path):
    server, url = serve(create_app(Engine(exported), memory=MemoryStore(tmp_path)))
    try:
        query = {**QUERY, "critic_rounds": 1, "namespace": "tiny", "max_tokens": 8, "lens": "critic"}
        response = httpx.post(f"{url}/v1/scenes", content=yaml.safe_dump(query, allow_unicode=True),
                              headers={"content-type": "application/yaml"}, timeout=60)
        assert response.status_code == 200, response.text
        answer = SceneResponse.model_validate(response.json())
        assert answer.repaired  # a model trained for thirty steps does not write the sections
        assert answer.response and answer.conclusion and answer.commentary and answer.meta_scene.roles
        assert [c.round for c in answer.critiques] == [1] and answer.usage.generations >= TRIES + 1
        again = httpx.post(f"{url}/v1/scenes", json={**query, "critic_rounds": 0}, timeout=60).json()
        assert [m["id"] for m in again["memory"]] == [r["id"] for r in httpx.get(f"{url}/v1/memory", params={"namespace": "tiny"}).json()["records"][1:]]
    finally:
        server.should_exit = True
