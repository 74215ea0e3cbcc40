"""The LLM annotator against a real local HTTP server that plays an OpenAI-compatible model.

The fake model reads the scene out of the prompt and answers from it: one "self" question per '?'
in the scene. Markers in the scene text make it misbehave: INVALID (prose until corrected),
ALWAYS-BAD (never valid), FAIL500 (HTTP 500 twice), REFUSE400 (HTTP 400 always).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jsonschema
import pytest

from openai_stub import StubServer, completion, scene_of
from ltm.config import LLMConfig
from ltm.formats import Scene, Span
from ltm.llm import AnswerCache, ChatClient, LLMError, load_prompt, map_bounded
from ltm.scenes.llm_annotate import ANNOTATION_SCHEMA, CORRECTION, annotate_with_llm, parse_answer

KEY_ENV = "LTM_TEST_LLM_KEY"


class FakeModel:
    """Shared state of the fake endpoint: what was asked, and how many requests overlapped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # {"body": ..., "headers": ..., "scene": ...}
        self.answered: list[str] = []  # scene texts that got a 200
        self.attempts: dict[str, int] = {}
        self.answer_limit: int | None = None  # after this many answers, every request gets a 503

    def reply(self, body: dict, headers: dict) -> tuple[int, str]:
        scene = scene_of(body)
        corrected = len(body["messages"]) > 1
        with self.lock:
            self.requests.append({"body": body, "headers": headers, "scene": scene})
            self.attempts[scene] = self.attempts.get(scene, 0) + 1
            attempt = self.attempts[scene]
        if "REFUSE400" in scene:
            return 400, json.dumps({"error": {"message": "prompt too long for the context"}})
        if "FAIL500" in scene and attempt <= 2:
            return 500, "internal error"
        with self.lock:
            if self.answer_limit is not None and len(self.answered) >= self.answer_limit:
                return 503, "overloaded"
            self.answered.append(scene)
        return 200, completion(self.content(scene, corrected))

    @staticmethod
    def content(scene: str, corrected: bool) -> str:
        if "ALWAYS-BAD" in scene:
            return json.dumps({"roles": "everyone", "tension": {}, "vector": {}, "loop": ["wander"], "questions": [], "backrefs": []})
        if "INVALID" in scene and not corrected:
            return "I think this scene is about doubt."
        answer = {
            "roles": [{"name": "THEON", "function": "speaker"}],
            "tension": {"poles": ["a", "b"], "level": "medium"},
            "vector": {"direction": "onward", "destination": None, "hint": "latent"},
            "loop": ["claim", "doubt"],
            "questions": [{"text": f"q{i}", "kind": "self"} for i in range(scene.count("?"))],
            "backrefs": [],
        }
        # Real models wrap their JSON in prose and fences; the parser must cope.
        return f"Here is the annotation:\n```json\n{json.dumps(answer, ensure_ascii=False)}\n```\nHope this helps."


@pytest.fixture
def server():
    model = FakeModel()
    with StubServer(model.reply, delay_s=0.05) as stub:
        model.stub, model.base_url = stub, stub.base_url
        yield model


@pytest.fixture
def config(server: FakeModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LLMConfig:
    monkeypatch.delenv(KEY_ENV, raising=False)
    return LLMConfig(
        base_url=server.base_url,
        model="fake",
        api_key_env=KEY_ENV,
        concurrency=3,
        retries=2,
        timeout_s=5,
        cache_dir=str(tmp_path / "cache"),
    )


def annotate(scenes: list[Scene], config: LLMConfig, **kwargs) -> list[Scene]:
    with ChatClient(config, backoff_s=0.001) as client:
        return annotate_with_llm(scenes, config, client=client, **kwargs)


def scene(index: int, text: str, lang: str = "en") -> Scene:
    return Scene(
        scene_id=f"doc#{index:04d}",
        doc_id="doc",
        index=index,
        span=Span(start=0, end=len(text)),
        text=text,
        lang=lang,
        annotator="paragraph-v0",
        meta={"phase": "logic"},
    )


def plain_scenes(n: int) -> list[Scene]:
    return [scene(i, f"Scene {i}. " + "Why? " * (i % 3)) for i in range(n)]


# --- the annotator ----------------------------------------------------------------------------------


def test_answers_are_applied_validated_and_named(server: FakeModel, config: LLMConfig) -> None:
    scenes = plain_scenes(4) + [scene(4, "Что это? Кто я?", lang="ru")]
    out = annotate(scenes, config)
    assert [s.scene_id for s in out] == [s.scene_id for s in scenes]
    for before, after in zip(scenes, out):
        assert len(after.questions) == before.text.count("?")
        assert all(q.kind == "self" for q in after.questions)
        assert after.roles[0].name == "THEON" and after.tension.level == "medium" and after.loop == ["claim", "doubt"]
        assert after.annotator == "llm:fake:prompt-v1"
        assert after.meta == {"phase": "logic"}
        Scene.model_validate(after.model_dump(by_alias=True))
    assert scenes[0].annotator == "paragraph-v0"  # the input scenes are left alone
    body = server.requests[0]["body"]
    assert body["model"] == "fake" and body["temperature"] == 0.0
    russian = next(r["body"] for r in server.requests if r["scene"].startswith("Что"))
    assert "Language of the scene: Russian." in russian["messages"][0]["content"]


def test_invalid_answer_is_retried_with_a_correction(server: FakeModel, config: LLMConfig) -> None:
    [out] = annotate([scene(0, "INVALID? yes?")], config)
    assert len(out.questions) == 2 and "llm_error" not in out.meta
    first, second = (r["body"]["messages"] for r in server.requests)
    assert len(first) == 1
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == "I think this scene is about doubt."
    assert second[2]["content"].startswith(CORRECTION.split("{")[0])
    assert "no JSON object" in second[2]["content"]


def test_always_bad_scene_keeps_its_annotation_and_the_batch_goes_on(server: FakeModel, config: LLMConfig) -> None:
    scenes = [scene(0, "Fine?"), scene(1, "ALWAYS-BAD?"), scene(2, "Also fine.")]
    out = annotate(scenes, config)
    assert out[1] == scenes[1].model_copy(update={"meta": out[1].meta})
    error = out[1].meta["llm_error"]
    assert "3 attempts" in error and "roles" in error and "loop" in error
    assert [s.annotator for s in out] == ["llm:fake:prompt-v1", "paragraph-v0", "llm:fake:prompt-v1"]
    assert server.attempts["ALWAYS-BAD?"] == config.retries + 1
    assert len(list(Path(config.cache_dir).rglob("*.json"))) == 2  # only valid answers are cached


def test_server_errors_are_retried(server: FakeModel, config: LLMConfig) -> None:
    [out] = annotate([scene(0, "FAIL500?")], config)
    assert len(out.questions) == 1 and "llm_error" not in out.meta
    assert server.attempts["FAIL500?"] == 3


def test_a_refused_request_is_recorded_without_retries(server: FakeModel, config: LLMConfig) -> None:
    out = annotate([scene(0, "REFUSE400"), scene(1, "fine?")], config)
    assert server.attempts["REFUSE400"] == 1
    assert "HTTP 400" in out[0].meta["llm_error"] and "too long" in out[0].meta["llm_error"]
    assert out[0].annotator == "paragraph-v0" and out[1].annotator == "llm:fake:prompt-v1"


def test_a_wrong_endpoint_stops_the_batch_at_once(server: FakeModel, config: LLMConfig) -> None:
    wrong = config.model_copy(update={"base_url": server.base_url + "/nowhere", "concurrency": 1})
    with pytest.raises(LLMError, match="HTTP 404") as caught:
        annotate(plain_scenes(3), wrong)
    assert caught.value.status == 404 and caught.value.url.endswith("/nowhere/chat/completions")


def test_concurrency_is_bounded_and_used(server: FakeModel, config: LLMConfig) -> None:
    annotate(plain_scenes(9), config)
    assert 1 < server.stub.max_in_flight <= config.concurrency


def test_progress_is_reported_per_scene(server: FakeModel, config: LLMConfig) -> None:
    seen: list[tuple[int, int]] = []
    annotate(plain_scenes(4), config, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_second_run_is_answered_from_the_cache(server: FakeModel, config: LLMConfig) -> None:
    scenes = plain_scenes(5)
    first = annotate(scenes, config)
    asked = len(server.requests)
    assert asked == 5
    second = annotate(scenes, config)
    assert len(server.requests) == asked
    assert second == first
    for path in Path(config.cache_dir).rglob("*.json"):
        jsonschema.validate(json.loads(path.read_text(encoding="utf-8")), ANNOTATION_SCHEMA)


def test_an_interrupted_run_resumes_with_what_is_missing(server: FakeModel, config: LLMConfig) -> None:
    scenes = plain_scenes(8)
    config = config.model_copy(update={"concurrency": 2, "retries": 1})
    server.answer_limit = 3
    with pytest.raises(LLMError, match="HTTP 503"):
        annotate(scenes, config)
    answered = set(server.answered)
    assert len(answered) == 3
    server.answer_limit = None
    server.requests.clear()
    out = annotate(scenes, config)
    assert {r["scene"] for r in server.requests} == {s.text for s in scenes} - answered
    assert len(server.requests) == len(scenes) - len(answered)
    assert all(s.annotator == "llm:fake:prompt-v1" for s in out)


def test_the_key_is_sent_only_when_its_variable_is_set(server: FakeModel, config: LLMConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    annotate([scene(0, "no key")], config)
    assert "Authorization" not in server.requests[-1]["headers"]
    monkeypatch.setenv(KEY_ENV, "sk-test")
    annotate([scene(1, "with key")], config)
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-test"


# --- the pieces ---------------------------------------------------------------------------------------


def test_client_raises_at_once_on_a_client_error(server: FakeModel, config: LLMConfig) -> None:
    prompt = load_prompt("scene_annotation").render(text="REFUSE400", language="English")
    with ChatClient(config, backoff_s=0.001) as client, pytest.raises(LLMError) as caught:
        client.complete([{"role": "user", "content": prompt}])
    assert caught.value.status == 400 and not caught.value.retryable
    assert config.base_url in str(caught.value) and "too long for the context" in str(caught.value)
    assert len(server.requests) == 1


def test_client_retries_a_dead_port_then_names_it(tmp_path: Path) -> None:
    # Port 9 (discard) is closed on test machines: every attempt is a connection error.
    config = LLMConfig(base_url="http://127.0.0.1:9/v1", retries=2, timeout_s=1, api_key_env=None, cache_dir=str(tmp_path))
    with ChatClient(config, backoff_s=0.001) as client, pytest.raises(LLMError, match=r"127\.0\.0\.1:9/v1/chat/completions.*attempt 3") as caught:
        client.complete([{"role": "user", "content": "hi"}])
    assert caught.value.status is None


def test_parse_answer_takes_the_outermost_object() -> None:
    text = 'Sure! ```json\n{"roles": [], "tension": {"poles": []}, "vector": {}, "loop": [], "questions": [], "backrefs": ["as I said"]}\n``` ok'
    assert parse_answer(text).backrefs == ["as I said"]


def test_cache_keys_and_files(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path)
    key = cache.key("text", 1, "m")
    assert len({key, cache.key("text", 2, "m"), cache.key("text", 1, "n"), cache.key("text2", 1, "m")}) == 4
    assert cache.get(key) is None
    cache.put(key, {"a": "б"})
    assert cache.get(key) == {"a": "б"}
    assert (tmp_path / key[:2] / f"{key[2:]}.json").is_file()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key[2:]}.json"]  # no temp files left


def test_map_bounded_keeps_order_and_raises_the_first_error() -> None:
    assert map_bounded(lambda x: x * x, range(10), 3) == [x * x for x in range(10)]
    assert map_bounded(lambda x: x, [], 3) == []

    def boom(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    with pytest.raises(ValueError, match="two"):
        map_bounded(boom, range(5), 2)
