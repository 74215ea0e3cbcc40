"""Scenes that follow the text's structure (headings, letters, chat turns, dialogue) and
annotations read from real signals (speakers, question kinds, evidence). Texts written for these tests."""

import json
import sys
from pathlib import Path

import pytest

from conftest import SHARED_CORPORA
from ltm.formats import Document, Encoding, Scene, Turn
from ltm.scenes.annotate import annotate
from ltm.scenes.lexicon import builtin_lexicon
from ltm.scenes.segment import segment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import scenes_quality  # noqa: E402

RU_LINE = "Он долго шёл по набережной и думал о том, что завтра всё решится, а сегодня ещё можно молчать."
EN_LINE = "He walked along the river for a long time and thought that tomorrow everything would be decided."


def _doc(text, lang="ru", **fields) -> Document:
    return Document(id="d", source="x.txt", format="text", title="t", lang=lang, text=text,
                    encoding=Encoding(detected="utf-8"), sha256="0" * 64, **fields)


def _scenes(doc, lo=60, hi=300):
    return [doc.text[s:e] for s, e in segment(doc, lo, hi)]


# --- structure first --------------------------------------------------------------------------------


def test_a_chapter_heading_starts_the_scene_it_titles_and_is_never_buried():
    dialogue = "\n\n".join(f"– Реплика {i}, и ещё одна мысль о том же, – сказал Иван." for i in range(3))
    text = "\n\n".join([RU_LINE] * 3 + ["V\nВеликий инквизитор", dialogue, RU_LINE])
    scenes = _scenes(_doc(text))
    titled = [s for s in scenes if "Великий инквизитор" in s]
    assert len(titled) == 1 and titled[0].startswith("V\nВеликий инквизитор\n\n– Реплика 0")
    assert all(not scenes_quality.buried_headings(s) for s in scenes)
    # Stacked headings ("Часть первая / Глава первая / I") open one scene together.
    stacked = _scenes(_doc("\n\n".join([RU_LINE] * 3 + ["Часть первая", "Глава первая", "I", RU_LINE, RU_LINE])))
    assert stacked[-1].startswith("Часть первая\n\nГлава первая\n\nI\n\n")


def test_a_heading_at_the_end_of_an_epigraph_paragraph_starts_the_first_chapter():
    text = "\n\n".join(["Белые ночи", "…Иль был он создан для того,\nЧтобы побыть хотя мгновенье?..\nИв. Тургенев\nНочь первая",
                        RU_LINE, RU_LINE, "Ночь вторая", RU_LINE, RU_LINE])
    scenes = _scenes(_doc(text))
    assert scenes[0].startswith("Белые ночи") and scenes[-1].startswith("Ночь вторая")


def test_letters_run_from_date_and_salutation_to_signature_and_postscript():
    letter_one = ["Апреля 8.", "Бесценная моя Варвара Алексеевна!", RU_LINE + " А сам теперь пребываю",
                  "другом вашим искренним", "Макаром Девушкиным.", "P. S. Пишите мне, маточка, поподробнее."]
    letter_two = ["Апреля 9.", "Милостивый государь, Макар Алексеевич!", RU_LINE, "Ваша", "В. Д."]
    scenes = _scenes(_doc("\n\n".join(letter_one + letter_two)))
    assert len(scenes) == 2
    assert scenes[0].startswith("Апреля 8.") and scenes[0].endswith("поподробнее.")
    assert scenes[1].startswith("Апреля 9.") and scenes[1].endswith("В. Д.")


def test_chat_turns_are_boundaries_and_markdown_is_never_cut_inside():
    bold = "**" + " ".join(["First step. Then a second step. And a third one, all in bold."] * 3) + "** " + " ".join([EN_LINE] * 4)
    code = "```\n" + "\n\n".join(f"line {i} = {i}" for i in range(40)) + "\n```"
    reply = "\n\n".join([bold] + [" ".join([EN_LINE] * 3)] * 4 + [code])
    text = f"# A chat\n\nUser: How do I start?\n\nAssistant: {reply}\n\nUser: Thanks."
    doc = _doc(text, lang="en", turns=[Turn(role="user", text="a"), Turn(role="assistant", text="b"), Turn(role="user", text="c")])
    scenes = _scenes(doc, 20, 60)
    assert scenes[0] == "# A chat\n\nUser: How do I start?" and scenes[-1] == "User: Thanks."
    assert all(s.count("**") % 2 == 0 for s in scenes)  # bold spans whole
    assert sum(s.count("```") for s in scenes) == 2 and any(s.startswith("```") and s.endswith("```") for s in scenes)
    # The same chat as plain markdown (no turns from ingest) is cut at its turns too.
    plain = _scenes(_doc(text, lang="en"), 20, 60)
    assert plain[0] == "# A chat\n\nUser: How do I start?" and plain[-1] == "User: Thanks."


def test_never_cut_inside_a_sentence():
    long_paragraph = " ".join([RU_LINE, "Это было в 1838 г. и т. д., как говорил Н. В. Гоголь в своё время."] * 12)
    doc = _doc(long_paragraph)
    for s, e in segment(doc, 20, 60):
        assert doc.text[e - 1] in ".!?…" and not doc.text[s:e].endswith(("г.", "т. д.", "Н.", "В."))
    # A sentence broken across paragraphs (a comma, or a page number inside it) is not a place to cut.
    broken = _doc("\n\n".join([RU_LINE] * 6 + ["И тогда, когда все уже разошлись по домам,", "— вдруг перед нею очутился он.",
                                               RU_LINE + " Таким торжественным", "367", "спокойствием сияло её лицо."] + [RU_LINE] * 6))
    for scene in _scenes(broken, 20, 60):
        assert not scene.endswith((",", "торжественным", "367"))


def test_dialogue_exchange_is_kept_together_and_cut_at_its_edges():
    exchange = "\n\n".join(["– Куда ты идёшь? – спросил Иван.", "– К реке, – ответил Алеша.", "– Зачем? – спросил Иван.",
                            "– Посмотреть на воду, – сказал Алеша.", "– Пойдём вместе, – сказал Иван."])
    narration = "\n\n".join([RU_LINE] * 4)
    doc = _doc("\n\n".join([narration, exchange, narration]))
    scenes = _scenes(doc, 20, 80)  # 175 words: two cuts are needed, and they fall at the exchange's edges
    assert scenes[1].startswith("– Куда ты идёшь?") and scenes[1].endswith("– Пойдём вместе, – сказал Иван.")


# --- roles, questions, evidence ---------------------------------------------------------------------------


def _speakers(text, lang="ru"):
    return [r.name for r in annotate(text, builtin_lexicon(lang))["roles"] if r.function == "speaker"]


def test_speakers_of_dash_and_quote_dialogue_from_verbs_of_saying_and_names():
    ru = ("– Что ж это такое? – засмеялся Иван.\n\n– А не рассердишься? – засмеялся и Алеша.\n\n"
          "– Я очень слушаю, – произнес Алеша.\n\n– Ну так слушай, – проговорил Иван Федорович.\n\n"
          "– Дайте мне руку, – сказал я моей незнакомке.\n\n"
          "– Извините, – обратился он к Марье Кондратьевне.\n\n– Хорошо, – сказала девушка.")
    assert _speakers(ru) == ["Иван", "Алеша", "девушка"]  # no pronoun, no addressee, one name per speaker
    en = ('"No," said Glaucon.\n\nYes, said Polemarchus, and not only so.\n\nThere he is, said the youth.\n\n'
          '"Wait," he said.\n\nI turned round, and asked him where his master was.\n\nTHEON: And you?')
    assert _speakers(en, "en") == ["THEON", "Glaucon", "Polemarchus", "youth"]


def test_no_role_is_ever_named_by_a_function_word():
    text = ("И он сказал: «Я не пойду». А я говорил: «Не надо». «Ну что ж», – сказал он. "
            'Then "never", he said. It says "so", and the rest told them "yes".')
    for lang in ("ru", "en"):
        names = [r.name.lower() for r in annotate(text, builtin_lexicon(lang))["roles"]]
        assert not set(names) & builtin_lexicon(lang).function_words


def test_question_kinds_from_words_of_address_dialogue_and_self_address():
    lex = builtin_lexicon("ru")
    kinds = {q.text: q.kind for q in annotate(
        "Умер у Горшкова маленький. Грустно, Варенька -- а? «Что это? — спросила она себя. — Откуда тут дождь?» "
        "Что же мне теперь делать?", lex)["questions"]}
    assert kinds["Грустно, Варенька -- а?"] == "addressed"
    assert kinds["Что это?"] == "self" and kinds["Откуда тут дождь?"] == "self"
    assert kinds["Что же мне теперь делать?"] == "self"
    lines = annotate("– Я-то смеюсь? Да я ли тут виноват? – засмеялся Иван.", lex)["questions"]
    assert [q.kind for q in lines] == ["addressed", "addressed"]  # a line of dialogue is said to someone


def test_vector_is_never_read_from_a_heading_or_bracketed_title():
    lex = builtin_lexicon("ru")
    assert annotate("[Путь к дому. Вечер.]\n\nОни сидели молча.", lex)["vector"].hint == "none"
    got = annotate("Они сидели молча. Это ведёт к новому решению: уйти утром.", lex)["vector"]
    assert got.hint == "explicit" and got.evidence is not None


def test_scene_files_written_before_the_evidence_fields_still_read():
    old = {"schema": "ltm.scene/2", "scene_id": "d#0000", "doc_id": "d", "index": 0, "span": {"start": 0, "end": 4},
           "text": "Text", "lang": "en", "tension": {"poles": [], "level": "low"}, "vector": {"hint": "none"},
           "annotator": "heuristic-v1"}
    scene = Scene.model_validate(old)
    assert scene.tension.evidence == [] and scene.vector.evidence is None


# --- the labelled set ------------------------------------------------------------------------------------


def test_labelled_set_is_offsets_and_labels_not_text():
    for name in ("dev", "heldout"):
        for line in (scenes_quality.LABELLED / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            passage = json.loads(line)
            assert "text" not in passage and all("text" not in s for s in passage["scenes"])
            assert passage["set"] == name and passage["scenes"][0]["start"] == passage["start"]


def test_quality_on_the_sample_corpus_passages_of_the_held_out_half():
    """A regression check on the passages of the held-out half that lie in the bundled sample
    corpus (the real corpora are not needed): boundaries beat both baselines, speakers, function
    words and question kinds meet the issue's targets."""
    passages = [p for p in scenes_quality.load_set("heldout") if p["source"]["corpus"] == "sample"]
    pairs = scenes_quality.passages_with_documents(passages)
    assert len(pairs) == len(passages) >= 10
    f1 = {}
    for name, cut in scenes_quality.SEGMENTERS.items():
        tally = scenes_quality.Tally()
        for passage, doc in pairs:
            scenes_quality.score_boundaries(passage, doc, cut(doc, scenes_quality.ScenesConfig()), 300, tally)
        f1[name] = tally.prf()[2]
    assert f1["ltm"] > f1["texttiling"] + 0.1 and f1["ltm"] > f1["fixed"] + 0.1
    figures = scenes_quality.score_annotations(pairs, show_errors=False)
    assert figures["speaker_f1"] >= 0.8 and figures["function_word_role_names"] == 0
    assert figures["question_kind_accuracy"] >= 0.8


@pytest.mark.skipif(not SHARED_CORPORA.is_dir(), reason="../shared/corpora not present: the real-book check needs it")
def test_no_real_book_scene_holds_a_buried_chapter_heading():
    from ltm.ingest import ingest_paths

    docs = ingest_paths([SHARED_CORPORA / "ru" / "dostoevsky" / "brat_ya_karamazovy.txt",
                         SHARED_CORPORA / "ru" / "dostoevsky" / "besy.txt"]).documents
    for doc in docs:
        for s, e in segment(doc, 60, 300):
            assert not scenes_quality.buried_headings(doc.text[s:e]), doc.text[s : s + 80]


def test_the_llm_annotator_is_scored_on_the_same_labelled_scenes(tmp_path):
    """bench/scenes_quality.py --llm: an OpenAI-compatible endpoint (here a stub that names every
    labelled speaker and calls every question addressed) is scored like the heuristic annotator."""
    from openai_stub import StubServer, completion, scene_of

    passages = [p for p in scenes_quality.load_set("heldout") if p["source"]["path"].endswith("ru_drama_dva_brata.md")]
    pairs = scenes_quality.passages_with_documents(passages)

    def reply(body, headers):
        text = scene_of(body)
        names = sorted({line.split(":")[0] for line in text.split("\n") if line[:1].isupper() and ":" in line[:12]})
        answer = {"roles": [{"name": n, "function": "speaker"} for n in names], "tension": {"poles": [], "level": "medium"},
                  "vector": {"hint": "none"}, "loop": [], "backrefs": [],
                  "questions": [{"text": q + "?", "kind": "addressed"} for q in text.split("?")[:-1]]}
        return 200, completion(json.dumps(answer, ensure_ascii=False))

    with StubServer(reply) as stub:
        config = tmp_path / "run.yaml"
        config.write_text(f"scenes:\n  llm:\n    base_url: {stub.base_url}\n    model: stub\n    api_key_env: null\n"
                          f"    cache_dir: {tmp_path / 'cache'}\n", encoding="utf-8")
        run = scenes_quality.llm_annotator(config)
        figures = scenes_quality.score_annotations(pairs, show_errors=False, annotator=run)
    assert run.name == "llm:stub" and run.counts["fallbacks"] == 0
    assert figures["speaker_f1"] == 1.0  # the drama's labels are its speakers
    labelled = [s["tension"] for p, _ in pairs for s in p["scenes"]]
    assert figures["tension_level_agreement"] == labelled.count("medium") / len(labelled)
