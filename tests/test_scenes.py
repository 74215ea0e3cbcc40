import json

from ltm.cli import main
from ltm.formats import Document, Encoding
from ltm.scenes import make_scenes
from ltm.scenes.annotate import questions, speakers
from ltm.scenes.segment import segment


def _doc(text: str, lang: str = "en") -> Document:
    return Document(id="d", source="x.md", format="markdown", title="t", lang=lang, text=text,
                    encoding=Encoding(detected="utf-8"), sha256="0" * 64)


def test_spans_index_the_text_exactly_and_in_order():
    text = "\n\n".join(f"Paragraph {i} " + "word " * (10 + 7 * i) for i in range(12))
    spans = segment(text, min_chars=50, max_chars=200)
    assert spans == sorted(spans)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    covered = "".join(text[s:e] for s, e in spans)
    assert covered.replace("\n", "") == text.replace("\n", "")


def test_long_single_line_is_cut_at_sentence_ends():
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    spans = segment(text, min_chars=10, max_chars=300)
    assert len(spans) > 5
    assert all(e - s <= 300 for s, e in spans)
    assert all(text[e - 1] in ". " for s, e in spans[:-1])
    assert "".join(text[s:e] for s, e in spans) == text


def test_short_paragraphs_are_merged_up_to_min_chars():
    text = "A.\n\nB.\n\nC.\n\n" + "D " * 100
    spans = segment(text, min_chars=20, max_chars=100)
    assert text[spans[0][0] : spans[0][1]].startswith("A.\n\nB.\n\nC.")


def test_annotation_of_speakers_and_questions():
    text = "THEON: Can a thing be measured? I doubt it.\nMIRA: Why? Пользователь: нет."
    assert [r.name for r in speakers(text)] == ["THEON", "MIRA"]
    assert [q.text for q in questions(text)] == ["THEON: Can a thing be measured?", "MIRA: Why?"]
    assert [(q.text, q.kind) for q in questions("Помним ли мы прошлое? Да. А ты помнишь?")] == [
        ("Помним ли мы прошлое?", "self"), ("А ты помнишь?", "addressed")]


def test_scenes_carry_document_tags():
    doc = _doc("First paragraph here.\n\nSecond one?")
    doc.meta["phase"] = "myth"
    doc.author = "Someone"
    scenes = make_scenes([doc], 1, 1000, [])
    assert len(scenes) == 1
    assert scenes[0].meta == {"phase": "myth", "author": "Someone"}
    assert scenes[0].text == doc.text[scenes[0].span.start : scenes[0].span.end]


def test_cli_reports_bad_lines_and_processes_the_rest(tmp_path, corpus):
    docs = tmp_path / "docs.jsonl"
    assert main(["ingest", str(corpus), "-o", str(docs)]) == 0
    lines = docs.read_text(encoding="utf-8").splitlines()
    lines.insert(1, "{not json")
    lines.insert(2, json.dumps({"id": "x"}))
    docs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "scenes.jsonl"
    assert main(["scenes", str(docs), "-o", str(out)]) == 0
    scenes = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {s["doc_id"] for s in scenes} == {json.loads(line)["id"] for line in lines if line.startswith('{"schema"')}
    assert all(s["schema"] == "ltm.scene/2" for s in scenes)
