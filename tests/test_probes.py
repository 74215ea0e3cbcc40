"""Thinking-behaviour probes (ltm.eval.probes): counts in both languages, hard negatives, rates per
1k tokens, the labelled set, quality floors on it, and the scene-structure check."""

from __future__ import annotations

import json

import pytest

from ltm.eval.probes import (
    PROBES,
    ProbeSet,
    claims_scene_structure,
    load_probes,
    rates_per_1k_tokens,
    read_labelled,
    valid_scene_structure,
    valid_structure_fraction,
    validate,
)

# (lang, probe, text, count): each count checked by hand. Markers with only spaces, commas or dashes
# between them are one event ("As I said earlier", "Постой, что-то не так").
COUNTS = [
    ("en", "self_questioning", "I wonder whether it matters. What do I actually mean by home?", 2),
    ("en", "back_reference", "As I said earlier, the price is the problem. Coming back to the question of trust: nobody asked.", 2),
    ("en", "role_change", "From her point of view, the move was a loss. On the other hand, he was relieved.", 2),
    ("en", "role_change", "ANNA: Tea?\nBORIS: Coffee.\nBORIS: Please.\nANNA: Fine.", 2),
    ("en", "tension", "He is rich, but unhappy; however, he never complains.", 2),
    ("en", "verification", "Wait, that's not right. Let me check: 17 times 3 is 51.", 2),
    ("en", "subgoal", "Let's break this down. First, we find the area. Step 2: multiply by the price.", 3),
    ("ru", "self_questioning", "Я спрашиваю себя, зачем всё это. Что я, собственно, имею в виду?", 2),
    ("ru", "back_reference", "Как я уже говорил, дело в цене. Вернёмся к вопросу о доверии.", 2),
    ("ru", "role_change", "С её точки зрения, это потеря. С другой стороны, если встать на место покупателя, всё иначе.", 2),
    ("ru", "role_change", "АННА: Чаю?\nБОРИС: Кофе.\nБОРИС: Пожалуйста.\nАННА: Ладно.", 2),
    ("ru", "tension", "Он богат, но несчастлив; однако никогда не жалуется.", 2),
    ("ru", "verification", "Постой, что-то не так. Проверю ещё раз: 17 на 3 — 51.", 2),
    ("ru", "subgoal", "Разобьём задачу на шаги. Во-первых, найдём площадь. Шаг 2: умножим на цену.", 3),
]

# Look-alikes that must not count for the probe named.
HARD_NEGATIVES = [
    ("en", "verification", "Wait for me at the station."),
    ("en", "verification", "Hold on to the railing; the steps are slippery."),
    ("en", "verification", "Everything else can wait."),
    ("en", "verification", "Let me check out the new cafe."),
    ("en", "subgoal", "She won first prize."),
    ("en", "subgoal", "At first, I thought he was joking."),
    ("en", "subgoal", "The first step on the moon was taken in 1969."),
    ("en", "tension", "Everyone but Tom came."),
    ("en", "tension", "He spoke of nothing but the war."),
    ("en", "tension", "He looked as though he had not slept."),
    ("en", "tension", "Do you want tea or coffee?"),
    ("en", "self_questioning", "Could you pass me the salt?"),
    ("en", "self_questioning", "'Am I late?' she asked the porter."),
    ("en", "self_questioning", "ALICE: Shall we go?"),
    ("en", "self_questioning", "I wonder if you could help me."),
    ("en", "back_reference", "I woke up earlier than usual."),
    ("en", "back_reference", "He went back to the village where he was born."),
    ("en", "role_change", "ALICE: Hello.\nALICE: Anyone here?"),
    ("en", "role_change", "A car came from the side of the road."),
    ("ru", "verification", "Подожди меня на вокзале."),
    ("ru", "verification", "Постой здесь минутку."),
    ("ru", "verification", "Дёрни стоп-кран."),
    ("ru", "subgoal", "Сначала я подумал, что он шутит."),
    ("ru", "subgoal", "Она получила первую премию."),
    ("ru", "tension", "Не только дети, но и взрослые пришли."),
    ("ru", "tension", "Дай мне хотя бы минуту."),
    ("ru", "tension", "Я пошёл домой, а потом в магазин."),
    ("ru", "tension", "Вам чай или кофе?"),
    ("ru", "self_questioning", "— Я не опоздала? — спросила она."),
    ("ru", "self_questioning", "Ты придёшь завтра?"),
    ("ru", "self_questioning", "АННА: Пойдём?"),
    ("ru", "self_questioning", "«Где я?» — спросил он."),
    ("ru", "back_reference", "Ранее неизвестный автор прислал рукопись."),
    ("ru", "back_reference", "Помнишь меня?"),
    ("ru", "role_change", "ИВАН: Привет.\nИВАН: Есть кто?"),
]

# Measured on the built-in labelled set (bench/probe_quality.py), then lowered by 0.15 and rounded
# down to 0.05: (precision, recall) per language and probe. A floor is never above the measured value.
FLOORS = {
    "en": {"self_questioning": (0.65, 0.80), "back_reference": (0.85, 0.70), "role_change": (0.85, 0.65),
           "tension": (0.75, 0.50), "verification": (0.75, 0.75), "subgoal": (0.85, 0.60)},
    "ru": {"self_questioning": (0.70, 0.85), "back_reference": (0.75, 0.65), "role_change": (0.85, 0.65),
           "tension": (0.50, 0.40), "verification": (0.70, 0.75), "subgoal": (0.85, 0.70)},
}


@pytest.mark.parametrize(("lang", "probe", "text", "expected"), COUNTS, ids=[f"{c[0]}-{c[1]}" for c in COUNTS])
def test_counts_each_probe(lang, probe, text, expected):
    assert load_probes(lang).count(text)[probe] == expected


@pytest.mark.parametrize(("lang", "probe", "text"), HARD_NEGATIVES, ids=[f"{c[0]}-{c[1]}" for c in HARD_NEGATIVES])
def test_hard_negatives_do_not_count(lang, probe, text):
    assert load_probes(lang).count(text)[probe] == 0


def test_count_gives_every_probe_and_other_languages_read_as_english():
    assert list(load_probes("ru").count("")) == list(PROBES)
    assert load_probes("de").lang == "en"
    assert load_probes("de").count("Wait, no. Let me check.") == load_probes("en").count("Wait, no. Let me check.")


def test_curly_apostrophes_and_yo_are_read_like_plain_ones():
    assert load_probes("en").count("That’s not right.")["verification"] == 1
    assert load_probes("ru").count("Вернемся к началу.") == load_probes("ru").count("Вернёмся к началу.")


def test_probe_data_is_checked():
    with pytest.raises(ValueError, match="missing"):
        ProbeSet.from_data("xx", {"tension": {"phrases": ["but"]}})
    data = {name: {} for name in PROBES}
    with pytest.raises(ValueError, match="unknown keys"):
        ProbeSet.from_data("xx", {**data, "tension": {"words": ["but"]}})
    with pytest.raises(ValueError, match="letter or digit"):
        ProbeSet.from_data("xx", {**data, "subgoal": {"phrases": ["plan:"]}})


def test_rates_per_1k_tokens_by_hand():
    texts = ["But it failed. That's not right.", "First, we find x."]  # 6 and 4 words
    rates = rates_per_1k_tokens(texts, "en", lambda text: len(text.split()))
    # tension: "But"; verification: "That's not right"; subgoal: "First, we": one each in 10 tokens.
    assert rates == {"self_questioning": 0.0, "back_reference": 0.0, "role_change": 0.0,
                     "tension": 100.0, "verification": 100.0, "subgoal": 100.0}


def test_rates_per_text_language_and_edge_cases():
    rates = rates_per_1k_tokens(["Wait, no.", "Постой, я ошибся."], ["en", "ru"], lambda text: 5)
    assert rates["verification"] == pytest.approx(200.0)  # one event in each text, 10 tokens
    assert rates_per_1k_tokens(["but"], "en", lambda text: 0)["tension"] == 0.0
    with pytest.raises(ValueError):
        rates_per_1k_tokens(["a", "b"], ["en"], len)


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    return read_labelled()


def test_labelled_set_parses_and_covers_every_probe_in_both_languages(labelled):
    assert len(labelled) >= 120
    assert len({p["id"] for p in labelled}) == len(labelled)
    by_lang = {lang: [p for p in labelled if p["lang"] == lang] for lang in ("en", "ru")}
    assert len(by_lang["en"]) == len(by_lang["ru"]) == len(labelled) // 2
    for passage in labelled:
        assert passage["text"].strip() and set(passage["labels"]) == set(PROBES)
        assert all(isinstance(v, bool) for v in passage["labels"].values())
    for probe in PROBES:
        assert sum(p["labels"][probe] for p in labelled) >= 15, probe
        for passages in by_lang.values():
            positives = sum(p["labels"][probe] for p in passages)
            assert 5 <= positives < len(passages), probe


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_validate_scores_and_quality_floors(lang):
    scores = validate(lang=lang)
    assert list(scores) == list(PROBES)
    for probe, figures in scores.items():
        assert all(0.0 <= figures[m] <= 1.0 for m in ("precision", "recall", "f1")), probe
        assert figures["support"] > 0
        precision, recall = FLOORS[lang][probe]
        assert figures["precision"] >= precision and figures["recall"] >= recall, (probe, figures)


def test_validate_reads_a_given_file(tmp_path):
    labels = dict.fromkeys(PROBES, False)
    rows = [
        {"id": "a", "lang": "en", "text": "Wait, that's wrong.", "labels": {**labels, "verification": True}},
        {"id": "b", "lang": "en", "text": "Wait for me.", "labels": {**labels, "verification": True}},
        {"id": "c", "lang": "en", "text": "Let me check the oven.", "labels": labels},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    verification = validate(path)["verification"]
    assert verification == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


VALID_SCENES = [
    "<|scene|>The sea was grey.<|/scene|>",
    "<|scene|><|lens:scene|><|header|><|tension:high|>Tension: high<|body|>The sea.<|/scene|>",
    "<|scene|><|lens:critic|>A critic reads:<|body|>The sea.<|header|>Why grey?<|/scene|><|scene|>Next.<|/scene|>",
    "roles: [Theon, Mira]\ntension: {level: high, poles: [stay, leave]}\nvector: toward the harbour\n",
    "Scene notes.\n\nroles:\n  - Theon\ntension:\n  level: medium\nvector:\n  direction: home\n\nThe end.",
    'The scene: {"roles": [{"name": "Theon", "function": "speaker"}], "tension": "medium", "vector": {"direction": "home"}} Done.',
    "The scene:\n```yaml\nroles: []\ntension: low\nvector: {direction: north}\n```\nThat is all.",
]
BROKEN_SCENES = [
    "<|scene|>The sea was grey.",  # never closed (a cut-off sample)
    "<|/scene|>text<|scene|>",  # closed before opened
    "<|scene|><|scene|>a<|/scene|><|/scene|>",  # nested
    "<|scene|>  <|header|> <|/scene|>",  # nothing inside
    "<|scene|><|body|>text<|body|>more<|/scene|>",  # two bodies
    "<|scene|><|header|>x<|body|> <|/scene|>",  # empty body
    "<|scene|>ok<|/scene|>\nroles: [a]\n",  # markers fine, data incomplete
    "roles: [a]\ntension: high\n",  # no vector
    "roles: [a]\ntension: extreme\nvector: x",  # unknown level
    "roles: Theon\ntension: low\nvector: x",  # roles not a list
    "roles: [a]\ntension: {level: low, poles: [a, b, c]}\nvector: x",  # three poles
    "roles: [a]\ntension: low\nvector: {speed: 3}",  # not a Vector
    "roles: [a]\ntension: low\nvector: x\nThe storm passed.",  # prose glued to the YAML
    '{"roles": ["a"], "tension": "low", "vector": "x"',  # JSON never closed
]


@pytest.mark.parametrize("text", VALID_SCENES)
def test_valid_scene_structure_accepts(text):
    assert claims_scene_structure(text) and valid_scene_structure(text)


@pytest.mark.parametrize("text", BROKEN_SCENES)
def test_valid_scene_structure_rejects(text):
    assert claims_scene_structure(text) and not valid_scene_structure(text)


def test_structure_fraction_counts_only_claiming_texts():
    prose = ["Just prose.", "Roles: Theon\nTension: high"]  # the lens header is prose for the reader
    assert not any(map(claims_scene_structure, prose))
    assert valid_structure_fraction([VALID_SCENES[0], BROKEN_SCENES[0], *prose]) == 0.5
    assert valid_structure_fraction(prose) is None


def test_the_llm_judge_counts_behaviours_through_a_real_endpoint_and_caches(tmp_path):
    from openai_stub import StubServer, completion, scene_of

    from ltm.config import LLMConfig
    from ltm.eval.judge import judge

    asked = []

    def reply(body, headers):
        text = scene_of(body)
        asked.append(text)
        if "BROKEN" in text and len(body["messages"]) == 1:
            return 200, completion("I think there is some verification here.")
        return 200, completion('{"verification": %d, "backtracking": 0, "subgoal_setting": %d, "backward_chaining": 0}'
                               % (text.lower().count("check"), text.lower().count("first")))

    with StubServer(reply) as stub:
        config = LLMConfig(base_url=stub.base_url, model="stub", api_key_env=None, cache_dir=str(tmp_path / "cache"), retries=1)
        texts = ["Let me check. Check again.", "First this, then that.", "BROKEN answer, then a check"]
        result = judge(texts, ["en", "en", "en"], config)
        assert result["samples_judged"] == 3
        assert result["mean_per_sample"] == {"verification": 1.0, "backtracking": 0.0, "subgoal_setting": 1 / 3, "backward_chaining": 0.0}
        assert len(asked) == 4  # the broken answer was asked again once
        assert judge(texts, ["en", "en", "en"], config) == result and len(asked) == 4  # all from the cache
