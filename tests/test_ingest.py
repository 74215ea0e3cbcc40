import codecs
import json

from ltm.cli import main
from ltm.ingest import ingest_paths
from ltm.ingest.lang import detect_language
from ltm.ingest.text import decode_bytes, normalize


def test_reads_markdown_with_sidecar_tags(corpus):
    result = ingest_paths([corpus])
    assert not result.errors
    assert len(result.documents) == 6
    doc = next(d for d in result.documents if d.source.endswith("ru_0.md"))
    assert doc.title == "Диалог 0"
    assert doc.author == "Тестовый Автор"
    assert doc.meta["phase"] == "myth"
    assert doc.lang == "ru"
    assert doc.format == "markdown"
    assert doc.turns is None


def test_cli_tags_override_sidecar(corpus):
    result = ingest_paths([corpus], tags={"phase": "irony"})
    assert {d.meta["phase"] for d in result.documents} == {"irony"}


def test_encodings_bom_utf16_cp1251_and_crlf(tmp_path):
    text = "Привет, мир.\r\nВторая строка."
    cases = {
        "bom.txt": codecs.BOM_UTF8 + text.encode("utf-8"),
        "utf16.txt": text.encode("utf-16"),
        "cp1251.txt": text.encode("cp1251"),
    }
    detected = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        result = ingest_paths([tmp_path / name])
        assert not result.errors
        assert result.documents[0].text == "Привет, мир.\nВторая строка."
        detected[name] = result.documents[0].encoding.detected
    assert detected == {"bom.txt": "utf-8-sig", "utf16.txt": "utf-16", "cp1251.txt": "cp1251"}


def test_normalize_is_nfc_and_collapses_blank_runs():
    decomposed = "е\u0308"  # e + combining diaeresis -> ё
    assert normalize(f"a  \r\n\r\n\r\n\r\nb{decomposed}") == "a\n\nbё"


def test_bad_files_are_reported_and_the_rest_is_ingested(tmp_path, corpus):
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 10)
    (corpus / "copy.md").write_bytes((corpus / "en_0.md").read_bytes())
    out = tmp_path / "docs.jsonl"
    assert main(["ingest", str(corpus), "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6
    assert json.loads(lines[0])["schema"] == "ltm.document/1"
    errors = [json.loads(line) for line in (tmp_path / "docs.errors.jsonl").read_text().splitlines()]
    problems = {e["path"].rsplit("/", 1)[-1]: e["problem"] for e in errors}
    assert "empty" in problems["empty.txt"]
    assert "binary" in problems["binary.txt"]
    assert "duplicate" in problems.get("copy.md", "") + problems.get("en_0.md", "")


def test_nothing_ingested_is_an_error_and_keeps_old_output(tmp_path):
    out = tmp_path / "docs.jsonl"
    out.write_text("previous\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    assert main(["ingest", str(tmp_path / "in"), "-o", str(out)]) == 1
    assert out.read_text() == "previous\n"
    assert main(["ingest", str(tmp_path / "missing"), "-o", str(tmp_path / "other.jsonl")]) == 1


def test_language_detection():
    assert detect_language("Это русский текст о памяти и времени.") == "ru"
    assert detect_language("This is a text about the memory of the river.") == "en"
    assert detect_language("Dies ist ein deutscher Satz über das Gedächtnis.") == "other"
    assert detect_language("12345 !!!") == "other"


def test_decode_rejects_binary():
    import pytest

    from ltm.ingest.text import UnreadableText

    with pytest.raises(UnreadableText):
        decode_bytes(b"\x00\x00abc")
