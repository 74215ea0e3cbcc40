"""Lenses: how each one frames a scene, and the LLM texts of the generative ones.

The generative texts are asked of a real local HTTP server playing an OpenAI-compatible model. It
answers "COMMENTARY: " and the scene's first words; scene texts starting with EMPTY get an empty
answer until corrected, ALWAYS-EMPTY never get more than a fenced blank, REFUSE400 gets HTTP 400.
"""

from __future__ import annotations

import json
import re
import threading
from importlib import resources
from pathlib import Path

import pytest
import yaml

from openai_stub import StubServer, completion, scene_of
from ltm.dataset.generate import CORRECTION, clean_answer, generate_lens_texts
from ltm.markup.lenses import check_lenses, header_text, render
from ltm.markup import BODY, BUILTIN_LENSES, GENERATIVE_LENSES, HEADER, LENSES, LOOP_TOKENS, SCENE_BEGIN, SCENE_END, SPECIAL_TOKENS, TENSION_TOKENS, Marker, lens_token
from ltm.config import LLMConfig
from ltm.formats import Question, Role, Scene, Span, Tension, Vector
from ltm.llm import ChatClient, LLMError

EN_TEXT = "THEON: Can a thing be measured without being changed? MIRA: A stone, perhaps. A feeling, never."
RU_TEXT = "ФЕОН: Помним ли мы прошлое или только пересказываем его? ЛИДА: Что ты видишь, когда вспоминаешь море?"


def make_scene(text: str, lang: str, index: int = 0, annotated: bool = True) -> Scene:
    fields: dict = {}
    if annotated and lang == "ru":
        fields = dict(
            roles=[Role(name="ФЕОН", function="speaker"), Role(name="inner voice", function="inner voice")],
            tension=Tension(poles=["память", "рассказ"], level="high"),
            vector=Vector(direction="от моря к отцу", destination="память как рассказ", hint="latent"),
            loop=["claim", "doubt", "inversion"],
            questions=[Question(text="Помним ли мы прошлое?", kind="self"), Question(text="Что ты видишь?", kind="addressed")],
        )
    elif annotated:
        fields = dict(
            roles=[Role(name="THEON", function="speaker"), Role(name="MIRA", function="objector")],
            tension=Tension(poles=["measuring", "changing"], level="medium"),
            vector=Vector(direction="from stones to feelings", hint="explicit"),
            loop=["claim", "doubt"],
            questions=[Question(text="Can a thing be measured without being changed?", kind="self")],
        )
    return Scene(scene_id=f"doc-{lang}#{index:04d}", doc_id=f"doc-{lang}", index=index, span=Span(start=0, end=len(text)),
                 text=text, lang=lang, annotator="test", **fields)


EN, RU = make_scene(EN_TEXT, "en"), make_scene(RU_TEXT, "ru")


def text_pieces(pieces: list[str]) -> list[str]:
    return [p for p in pieces if not isinstance(p, Marker)]


# --- rendering ---------------------------------------------------------------------------------------


def test_the_lens_names_match_the_tokenizer() -> None:
    assert not set(BUILTIN_LENSES) & set(GENERATIVE_LENSES)


def test_plain_is_the_verbatim_text_alone() -> None:
    for scene in (EN, RU):
        pieces = render(scene, "plain", pass_index=3)
        assert pieces == [SCENE_BEGIN, scene.text, SCENE_END]
        assert [type(p) for p in pieces] == [Marker, str, Marker]


@pytest.mark.parametrize("lens", BUILTIN_LENSES)
@pytest.mark.parametrize("scene", [EN, RU, make_scene(EN_TEXT, "en", annotated=False)], ids=["en", "ru", "bare"])
def test_every_builtin_lens_keeps_the_marker_order(scene: Scene, lens: str) -> None:
    for pass_index in range(4):
        pieces = render(scene, lens, pass_index)
        assert pieces[0] == SCENE_BEGIN and pieces[-1] == SCENE_END
        if lens != "plain":
            assert pieces[1] == lens_token(lens) and pieces.count(BODY) == 1
            at = pieces.index(scene.text)
            assert pieces[at - 1] == BODY and pieces[at + 1] in (SCENE_END, HEADER)
        assert all(isinstance(p, Marker) for p in pieces if p in SPECIAL_TOKENS)
        assert all(p and "<|" not in p for p in text_pieces(pieces))  # no special token hides in the text
        assert "".join(text_pieces(pieces)).count(scene.text) == 1
        assert pieces == render(scene, lens, pass_index)


def test_scene_lens_puts_the_annotation_in_markers_and_a_header() -> None:
    pieces = render(EN, "scene")
    assert pieces[:6] == [SCENE_BEGIN, lens_token("scene"), HEADER, TENSION_TOKENS["medium"], LOOP_TOKENS["claim"], LOOP_TOKENS["doubt"]]
    header = pieces[6]
    assert pieces[7:] == [BODY, EN.text, SCENE_END]
    assert header.splitlines() == [
        "Roles: THEON (speaker), MIRA (objector)",
        "Tension: measuring / changing (medium)",
        "Direction: from stones to feelings (stated)",
        "Loop: claim → doubt",
        "Questions:",
        "- Can a thing be measured without being changed? (to oneself)",
    ]


def test_scene_lens_speaks_russian_for_a_russian_scene() -> None:
    pieces = render(RU, "scene")
    assert pieces[3:7] == [TENSION_TOKENS["high"], LOOP_TOKENS["claim"], LOOP_TOKENS["doubt"], LOOP_TOKENS["inversion"]]
    header = pieces[7]
    for word in ("Роли: ФЕОН (говорящий), внутренний голос", "Напряжение: память / рассказ (высокое)",
                 "Направление: от моря к отцу", "Итог: память как рассказ", "утверждение → сомнение → переворот",
                 "Вопросы:", "- Что ты видишь? (собеседнику)"):
        assert word in header
    assert not re.search(r"Roles|Tension|Direction|Loop|Questions|high|speaker", header)


def test_empty_fields_are_left_out_and_other_languages_fall_back_to_english() -> None:
    bare = make_scene("Ein Satz.", "de", annotated=False)
    assert header_text(bare) == ""
    assert render(bare, "scene") == [SCENE_BEGIN, lens_token("scene"), HEADER, TENSION_TOKENS["low"], BODY, bare.text, SCENE_END]
    german = make_scene("Ein Satz?", "de")
    assert header_text(german) == header_text(EN.model_copy(update={"text": "Ein Satz?"}))
    assert render(german, "critic")[2] == render(EN, "critic")[2]


def test_questions_lens_lists_the_questions_before_the_text() -> None:
    pieces = render(RU, "questions")
    assert pieces[:3] == [SCENE_BEGIN, lens_token("questions"), HEADER] and pieces[4:] == [BODY, RU.text, SCENE_END]
    lines = pieces[3].splitlines()
    assert lines[1:3] == ["- Помним ли мы прошлое? (себе)", "- Что ты видишь? (собеседнику)"]
    assert re.search("[а-я]", lines[0]) and re.search("[а-я]", lines[-1])
    assert len({render(RU, "questions", i)[3] for i in range(3)}) == 3


def test_questions_lens_says_so_when_a_scene_asks_nothing() -> None:
    bare = make_scene(EN_TEXT, "en", annotated=False)
    frame = render(bare, "questions")[3]
    assert "- " not in frame and len(frame.splitlines()) == 2
    assert frame != render(EN, "questions")[3]


@pytest.mark.parametrize("lens", ["critic", "child"])
def test_reader_lenses_vary_by_pass_and_repeat_for_the_same_pass(lens: str) -> None:
    frames = [render(RU, lens, i) for i in range(3)]
    befores, afters = [f[2] for f in frames], [f[-2] for f in frames]
    assert len(set(befores)) == 3 and len(set(afters)) == 3
    assert render(RU, lens, 3) == frames[0]  # wordings cycle
    assert all(re.search("[а-я]", t) for t in befores + afters)
    assert frames[1][3:7] == [BODY, RU.text, HEADER, afters[1]]
    assert render(EN, lens, 1)[2] != befores[1]


def test_critic_and_child_frames_say_what_they_are() -> None:
    assert "critic" in render(EN, "critic", 0)[2] and "child" in render(EN, "child", 0)[2]
    assert "Критик" in render(RU, "critic", 0)[2] and "ребёнку" in render(RU, "child", 0)[2]


def test_generative_lenses_wrap_the_generated_text() -> None:
    assert render(EN, "commentary", generated="It doubts.") == [
        SCENE_BEGIN, lens_token("commentary"), BODY, EN.text, HEADER, "It doubts.", SCENE_END]
    assert render(EN, "analogy", 2, generated="Like a scale.") == [
        SCENE_BEGIN, lens_token("analogy"), BODY, EN.text, HEADER, "Like a scale.", SCENE_END]
    assert render(EN, "paraphrase", generated="THEON: Does weighing alter?") == [
        SCENE_BEGIN, lens_token("paraphrase"), BODY, "THEON: Does weighing alter?", SCENE_END]


def test_misuse_is_refused() -> None:
    for lens in GENERATIVE_LENSES:
        with pytest.raises(ValueError, match=lens):
            render(EN, lens)
    with pytest.raises(ValueError, match="plain"):
        render(EN, "plain", generated="extra")
    with pytest.raises(ValueError, match="'sideways'.*known: plain, scene, questions, critic, child, commentary"):
        render(EN, "sideways")
    check_lenses(list(LENSES))
    with pytest.raises(ValueError, match="'bogus', 'zzz'") as caught:
        check_lenses(["plain", "bogus", "zzz"])
    assert "'plain'" not in str(caught.value)


def test_frame_files_have_the_same_shape() -> None:
    def shape(data: object) -> object:
        return {k: shape(v) for k, v in data.items()} if isinstance(data, dict) else type(data).__name__

    folder = resources.files("ltm").joinpath("data/lenses")
    files = [yaml.safe_load(folder.joinpath(f"{lang}.yaml").read_text(encoding="utf-8")) for lang in ("en", "ru")]
    assert shape(files[0]) == shape(files[1])
    assert set(files[0]["scene"]["loop_steps"]) == set(LOOP_TOKENS) and set(files[0]["scene"]["levels"]) == set(TENSION_TOKENS)


# --- generated texts ----------------------------------------------------------------------------------



class FakeModel:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # {"body": ..., "headers": ..., "scene": ...}

    def reply(self, body: dict, headers: dict) -> tuple[int, str]:
        scene = scene_of(body)
        with self.lock:
            self.requests.append({"body": body, "headers": headers, "scene": scene})
        if scene.startswith("REFUSE400"):
            return 400, json.dumps({"error": {"message": "prompt too long for the context"}})
        if scene.startswith("ALWAYS-EMPTY"):
            content = "```\n  \n```"
        elif scene.startswith("EMPTY") and len(body["messages"]) == 1:
            content = "   \n"
        else:
            content = "COMMENTARY: " + " ".join(scene.split()[:3])
            content = f"```text\n{content}\n```" if scene.startswith("FENCED") else f"\n{content}\n"
        return 200, completion(content)

    def asked(self, scene: str) -> int:
        return sum(r["scene"] == scene for r in self.requests)


@pytest.fixture
def server():
    model = FakeModel()
    with StubServer(model.reply) as stub:
        model.base_url = stub.base_url
        yield model


@pytest.fixture
def config(server: FakeModel, tmp_path: Path) -> LLMConfig:
    return LLMConfig(base_url=server.base_url, model="fake", api_key_env=None, concurrency=3, retries=2,
                     timeout_s=5, cache_dir=str(tmp_path / "cache"))


def generate(scenes: list[Scene], lens: str, config: LLMConfig, **kwargs) -> dict[str, str]:
    with ChatClient(config, backoff_s=0.001) as client:
        return generate_lens_texts(scenes, lens, config, client=client, **kwargs)


def test_texts_are_generated_per_scene_without_a_key(server: FakeModel, config: LLMConfig) -> None:
    scenes = [make_scene(f"Scene {i} asks why.", "en", i) for i in range(4)] + [RU]
    seen: list[tuple[int, int]] = []
    texts = generate(scenes, "commentary", config, on_progress=lambda done, total: seen.append((done, total)))
    assert list(texts) == [s.scene_id for s in scenes]
    assert texts[scenes[2].scene_id] == "COMMENTARY: Scene 2 asks"
    assert texts[RU.scene_id] == "COMMENTARY: ФЕОН: Помним ли"
    assert seen == [(i, 5) for i in range(1, 6)]
    assert all("Authorization" not in r["headers"] for r in server.requests)
    russian = next(r["body"]["messages"][0]["content"] for r in server.requests if r["scene"] == RU.text)
    assert "Language of the scene: Russian." in russian and "commentary" in russian
    assert render(scenes[2], "commentary", generated=texts[scenes[2].scene_id])[-2] == "COMMENTARY: Scene 2 asks"


def test_a_second_run_comes_from_the_cache_and_lenses_do_not_share_it(server: FakeModel, config: LLMConfig) -> None:
    scenes = [make_scene(f"Scene {i}.", "en", i) for i in range(3)]
    first = generate(scenes, "analogy", config)
    assert len(server.requests) == 3
    assert generate(scenes, "analogy", config) == first and len(server.requests) == 3
    stored = sorted(json.loads(p.read_text(encoding="utf-8"))["text"] for p in Path(config.cache_dir).rglob("*.json"))
    assert stored == sorted(first.values())
    generate(scenes, "paraphrase", config)
    assert len(server.requests) == 6
    assert "rephrase" in server.requests[-1]["body"]["messages"][0]["content"]


def test_an_empty_answer_is_retried_with_a_correction(server: FakeModel, config: LLMConfig) -> None:
    scene = make_scene("EMPTY at first, then fine.", "en")
    assert generate([scene], "commentary", config) == {scene.scene_id: "COMMENTARY: EMPTY at first,"}
    first, second = (r["body"]["messages"] for r in server.requests)
    assert len(first) == 1 and [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[2]["content"] == CORRECTION


def test_scenes_without_a_text_are_reported_and_the_batch_goes_on(server: FakeModel, config: LLMConfig) -> None:
    scenes = [make_scene("ALWAYS-EMPTY here.", "en", 0), make_scene("REFUSE400 this.", "en", 1), make_scene("FENCED answer.", "en", 2)]
    errors: list[str] = []
    texts = generate(scenes, "paraphrase", config, errors=errors)
    assert texts == {scenes[2].scene_id: "COMMENTARY: FENCED answer."}
    assert errors[0] == f"{scenes[0].scene_id}: no answer in 3 attempts: every answer was empty"
    assert errors[1].startswith(f"{scenes[1].scene_id}: ") and "HTTP 400" in errors[1] and "too long" in errors[1]
    assert server.asked(scenes[0].text) == config.retries + 1 and server.asked(scenes[1].text) == 1
    assert len(list(Path(config.cache_dir).rglob("*.json"))) == 1  # only texts are cached


def test_a_wrong_endpoint_raises_and_a_builtin_lens_is_refused(server: FakeModel, config: LLMConfig) -> None:
    wrong = config.model_copy(update={"base_url": server.base_url + "/nowhere", "concurrency": 1})
    with pytest.raises(LLMError, match="HTTP 404"):
        generate([EN], "commentary", wrong)
    with pytest.raises(ValueError, match="'critic' is not generated"):
        generate([EN], "critic", config)
    assert server.requests == []


def test_clean_answer_strips_whitespace_and_a_whole_fence() -> None:
    assert clean_answer("  text \n") == "text"
    assert clean_answer("```markdown\nline one\nline two\n```") == "line one\nline two"
    assert clean_answer("```\n\n```") == ""
    assert clean_answer("see ```code``` here") == "see ```code``` here"
