"""Ingest of plain text and Markdown: encodings, mojibake, Gutenberg, reflow, archives, duplicates, errors."""

import codecs
import json
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_CORPORA

from ltm.cli import main
from ltm.ingest import ingest_paths
from ltm.ingest.decode import decode
from ltm.ingest.gutenberg import strip_gutenberg
from ltm.ingest.lang import detect_language
from ltm.ingest.mojibake import repair, repair_line
from ltm.ingest.raw import ReaderError
from ltm.ingest.reflow import reflow

RU = "Допустим, память не хранит прошлое, а пересказывает его. Подожди, проверю ещё раз."
EN = "Suppose memory does not keep the past but retells it. Wait, let me check that again."


# --- mojibake (written before the repair code: ftfy 6.3.1 fails the first case) -----------------


def test_mac_roman_mangled_cyrillic_is_repaired():
    assert repair_line("–¥–æ–ø—É—Å—Ç–∏–º") == ("допустим", "mac_roman")


@pytest.mark.parametrize("codepage", ["cp1252", "latin_1", "mac_roman", "cp1251"])
def test_utf8_read_as_a_single_byte_codepage_is_repaired(codepage):
    for original in (RU, "Déjà vu — «naïve» café, ещё.", EN):
        mangled = original.encode("utf-8").decode(codepage, errors="strict" if codepage != "cp1252" else "ignore")
        if codepage == "cp1252":  # cp1252 lacks five bytes; a lenient decoder passes them through
            mangled = "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in original.encode("utf-8"))
        fixed, _ = repair(mangled)
        assert fixed == original


def test_repair_is_line_by_line_and_recorded():
    damaged = RU.encode("utf-8").decode("mac_roman")
    text = f"{RU}\n{damaged}\n{EN}"
    fixed, repairs = repair(text)
    assert fixed == f"{RU}\n{RU}\n{EN}"
    assert repairs == ["mojibake:mac_roman (1 lines)"]


@pytest.mark.parametrize("clean", [RU, EN, "Straße, Größe, Ærøskøbing", "1 ≤ x ≥ 2, π ≈ 3.14 — “quotes” ‘single’ …", "naïve café résumé", "¿Qué? ¡Sí!"])
def test_clean_text_is_left_alone(clean):
    assert repair(clean) == (clean, [])


def test_mojibake_file_is_repaired_on_ingest(tmp_path):
    (tmp_path / "m.txt").write_text(RU.encode("utf-8").decode("mac_roman") + "\n\n" + RU, encoding="utf-8")
    doc = ingest_paths([tmp_path]).documents[0]
    assert doc.text == f"{RU}\n\n{RU}"
    assert doc.encoding.repaired == ["mojibake:mac_roman (1 lines)"]


# --- encodings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,encoding",
    [
        (codecs.BOM_UTF8 + RU.encode("utf-8"), "utf-8-sig"),
        (RU.encode("utf-8"), "utf-8"),
        (RU.encode("utf-16"), "utf-16"),
        (RU.encode("utf-16-le"), "utf-16-le"),
        (EN.encode("utf-16-be"), "utf-16-be"),
        ((RU + " " + RU).encode("cp1251"), "cp1251"),
        ((RU + " " + RU).encode("koi8_r"), "koi8_r"),
    ],
)
def test_decoding(data, encoding):
    decoded = decode(data)
    assert decoded.encoding == encoding
    assert decoded.text in (RU, EN, RU + " " + RU)


def test_western_codepage():
    text = "Café au lait, naïve façade: déjà vu in the crème brûlée of señor Müller. " * 3
    decoded = decode(text.encode("cp1252"))
    assert decoded.text == text
    assert decoded.encoding in {"cp1252", "iso8859_15", "latin_1"}


def test_binary_is_refused():
    with pytest.raises(ReaderError, match="binary"):
        decode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


# --- reflow and Gutenberg ------------------------------------------------------------------------


def test_hard_wrapped_paragraphs_are_joined_and_hyphenation_undone():
    wrapped = (
        "It was a long evening, and the question that had been waiting all day\r\n"
        "came back to him: could a thing be measured without being chan-\r\n"
        "ged by the measuring? He did not know, and he said so plainly.\r\n"
        "\r\n"
        "Short line\r\nanother short\r\n"
    )
    assert reflow(wrapped) == (
        "It was a long evening, and the question that had been waiting all day came back to him: "
        "could a thing be measured without being changed by the measuring? He did not know, and he said so plainly."
        "\n\nShort line\nanother short"
    )


def test_one_paragraph_per_line_gets_blank_lines():
    line = "Это длинный абзац, записанный одной строкой, как в файлах, где каждый абзац занимает ровно одну строку текста."
    assert reflow(f"{line} 1\n{line} 2\n{line} 3") == f"{line} 1\n\n{line} 2\n\n{line} 3"


def test_gutenberg_boilerplate_is_removed():
    text = (
        "The Project Gutenberg EBook of A Test, by Nobody\n\nTitle: A Test\n\nAuthor: Nobody\n\nLanguage: English\n\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK A TEST ***\n\n\nProduced by Someone\n\n\n"
        "CHAPTER I\n\nThe book itself.\n\n"
        "End of the Project Gutenberg EBook of A Test, by Nobody\n\n*** END OF THIS PROJECT GUTENBERG EBOOK A TEST ***\n\n"
        "Section 1. General Terms of Use and Redistributing Project Gutenberg-tm electronic works\n"
    )
    body, fields = strip_gutenberg(text)
    assert body == "CHAPTER I\n\nThe book itself."
    assert fields == {"title": "A Test", "author": "Nobody", "language": "English"}


def test_gutenberg_file_with_bom_and_crlf(tmp_path):
    text = (
        "The Project Gutenberg EBook of A Test\r\n\r\nTitle: A Test\r\n\r\nAuthor: Nobody\r\n\r\nLanguage: English\r\n\r\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\nThe book of the test, which is all there is.\r\n\r\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\nThe Full Project Gutenberg License\r\n"
    )
    (tmp_path / "pg.txt").write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    doc = ingest_paths([tmp_path]).documents[0]
    assert doc.text == "The book of the test, which is all there is."
    assert (doc.title, doc.author, doc.lang) == ("A Test", "Nobody", "en")
    assert "gutenberg:boilerplate removed" in doc.encoding.repaired


# --- the batch: sidecar tags, archives, duplicates, errors -----------------------------------------


def test_reads_markdown_with_sidecar_tags(corpus):
    result = ingest_paths([corpus])
    assert not result.errors
    assert len(result.documents) == 6
    doc = next(d for d in result.documents if d.source.endswith("ru_0.md"))
    assert (doc.title, doc.author, doc.meta["phase"], doc.lang, doc.format) == ("Диалог 0", "Тестовый Автор", "myth", "ru", "markdown")
    assert doc.turns is None and len(doc.sha256) == 64


def test_cli_tags_override_sidecar(corpus):
    result = ingest_paths([corpus], tags={"phase": "irony"})
    assert {d.meta["phase"] for d in result.documents} == {"irony"}


def test_sidecar_tags_reach_symlinked_files(tmp_path, corpus):
    # A folder of links to texts kept elsewhere: the sidecar beside the links names them.
    (tmp_path / "links").mkdir()
    for name in ("en_0.md", "ru_0.md"):
        (tmp_path / "links" / name).symlink_to(corpus / name)
    (tmp_path / "links" / "metadata.yaml").write_text(yaml.safe_dump({"defaults": {"phase": "drama"}, "files": {"ru_0.md": {"author": "Лида"}}},
                                                                     allow_unicode=True), encoding="utf-8")
    docs = {Path(d.source).name: d for d in ingest_paths([tmp_path / "links"]).documents}
    assert {name: (d.meta.get("phase"), d.author) for name, d in docs.items()} == {"en_0.md": ("drama", None), "ru_0.md": ("drama", "Лида")}


def test_a_metadata_csv_beside_the_files_gives_titles_authors_years_and_tags(tmp_path, corpus):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "metadata.csv").write_text("file,title,author,year,tags\n"
                                           "en_0.md,An Essay,\"Doe, J.\",1901,phase=irony; kind=essay\n"
                                           "ru_0.md,,Автор,,\n"
                                           "missing.md,Nowhere,,,\n", encoding="utf-8")
    for name in ("en_0.md", "ru_0.md"):
        (tmp_path / "books" / name).write_bytes((corpus / name).read_bytes())
    result = ingest_paths([tmp_path / "books"])
    docs = {Path(d.source).name: d for d in result.documents}
    en, ru = docs["en_0.md"], docs["ru_0.md"]
    assert (en.title, en.author, en.meta) == ("An Essay", "Doe, J.", {"year": 1901, "phase": "irony", "kind": "essay"})
    assert (ru.title, ru.author, ru.meta) == ("Диалог 0", "Автор", {})
    assert [e.line() for e in result.errors] == [f"{tmp_path / 'books' / 'metadata.csv'}: line 4: no file missing.md beside the table"]


def test_a_table_with_other_columns_is_mapped_in_metadata_yaml_and_matched_by_transliterated_title(tmp_path):
    # The Dostoevsky folder's info.csv has `name,year`: Russian titles, files named by their transliteration.
    source = SHARED_CORPORA / "ru" / "dostoevsky"
    if not (source / "info.csv").exists():
        pytest.skip(f"needs {source / 'info.csv'}, a real corpus of ../shared/corpora (SOURCES.md), absent from this checkout")
    folder = tmp_path / "dostoevsky"
    folder.mkdir()
    for name in ("bednye_lyudi.txt", "brat_ya_karamazovy.txt", "zapiski_iz_podpol_ya.txt", "info.csv"):
        (folder / name).symlink_to(source / name)
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"defaults": {"author": "Фёдор Достоевский"},
                                                         "table": {"path": "info.csv", "columns": {"title": "name", "year": "year"}}},
                                                        allow_unicode=True), encoding="utf-8")
    result = ingest_paths([folder])
    found = sorted((d.title, d.author, d.meta["year"]) for d in result.documents)
    assert found == [("Бедные люди", "Фёдор Достоевский", 1846), ("Братья Карамазовы", "Фёдор Достоевский", 1881),
                     ("Записки из подполья", "Фёдор Достоевский", 1864)]
    assert not [e for e in result.errors if e.kind == "error"]  # rows for the 30 works not linked here are no error
    assert result.skipped == []  # info.csv is the folder's metadata, not a file of another type
    # Mapped onto the wrong column, no row matches a file: said, not silent.
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"table": {"path": "info.csv", "columns": {"title": "year"}}}), encoding="utf-8")
    problems = [e.line() for e in ingest_paths([folder]).errors if e.kind == "error"]
    assert problems == [f"{folder / 'metadata.yaml'}: {folder / 'info.csv'}: no row's title ('year' column) names a file here, "
                        "as it is or in Latin letters"]


def test_zip_archives_are_read_and_broken_ones_reported(tmp_path, corpus):
    with zipfile.ZipFile(tmp_path / "books.zip", "w") as zf:
        zf.write(corpus / "en_0.md", "inner/en_0.md")
        zf.writestr("inner/cp1251.txt", (RU + " " + RU).encode("cp1251"))
        zf.writestr("image.png", b"\x89PNG")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    result = ingest_paths([tmp_path / "books.zip", tmp_path / "broken.zip"])
    assert sorted(d.source.rsplit("/", 1)[-1] for d in result.documents) == ["cp1251.txt", "en_0.md"]
    assert next(d for d in result.documents if d.source.endswith("cp1251.txt")).encoding.detected == "cp1251"
    assert [e.path for e in result.errors] == [str(tmp_path / "broken.zip")]
    assert "unreadable archive" in result.errors[0].problem


def test_exact_and_near_duplicates_are_skipped_naming_the_kept_one(tmp_path):
    base = " ".join(f"Sentence {i} says something about memory and retelling the past." for i in range(60))
    (tmp_path / "a.txt").write_text(base, encoding="utf-8")
    (tmp_path / "b.txt").write_text(base, encoding="utf-8")
    (tmp_path / "c.txt").write_text(base.replace("Sentence 7 ", "Line 7 "), encoding="utf-8")
    (tmp_path / "d.txt").write_text(RU * 5, encoding="utf-8")
    result = ingest_paths([tmp_path])
    assert [d.source.rsplit("/", 1)[-1] for d in result.documents] == ["a.txt", "d.txt"]
    problems = {e.path.rsplit("/", 1)[-1]: e.problem for e in result.errors}
    assert problems["b.txt"].startswith("exact duplicate of") and problems["b.txt"].endswith("a.txt, skipped")
    assert problems["c.txt"].startswith("near duplicate (similarity 0.") and "a.txt" in problems["c.txt"]
    assert all(e.kind == "duplicate" for e in result.errors)


def test_bad_files_are_reported_and_the_rest_is_ingested(tmp_path, corpus):
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 10)
    out = tmp_path / "docs.jsonl"
    assert main(["ingest", str(corpus), "-o", str(out)]) == 0
    assert main(["ingest", str(corpus), "-o", str(tmp_path / "strict.jsonl"), "--strict"]) == 1
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["schema"] == "ltm.document/1"
    errors = [json.loads(line) for line in (tmp_path / "docs.errors.jsonl").read_text().splitlines()]
    problems = {e["path"].rsplit("/", 1)[-1]: e["problem"] for e in errors}
    assert problems["empty.txt"] == "empty file" and problems["binary.txt"].startswith("binary file")
    assert len(problems) == 2


def test_nothing_ingested_is_an_error_and_keeps_old_output(tmp_path):
    out = tmp_path / "docs.jsonl"
    out.write_text("previous\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    assert main(["ingest", str(tmp_path / "in"), "-o", str(out)]) == 1
    assert out.read_text() == "previous\n"
    assert main(["ingest", str(tmp_path / "missing"), "-o", str(tmp_path / "other.jsonl")]) == 1


def test_language_detection():
    assert detect_language(RU) == "ru"
    assert detect_language(EN) == "en"
    assert detect_language("Dies ist ein deutscher Satz über das Gedächtnis und die Zeit.") == "other"
    assert detect_language("Ово је српски текст, написан ћирилицом, без руских речи.") == "other"
    assert detect_language("12345 !!!") == "other"


def test_near_duplicate_search_finds_an_edited_copy_and_leaves_distinct_texts_alone():
    from ltm.ingest.dedup import DuplicateFinder

    words = [f"w{n}" for n in range(3000)]
    finder = DuplicateFinder(0.85)
    assert finder.check("a", "1", " ".join(words)) is None
    edited = [f"x{n}" if n % 150 == 0 else w for n, w in enumerate(words)]  # 20 words changed: Jaccard about 0.94
    found = finder.check("b", "2", " ".join(edited))
    assert found is not None and found.kept == "a" and 0.87 <= found.similarity < 1.0
    assert finder.check("c", "3", " ".join(reversed(words))) is None
    assert finder.check("d", "1", "anything").similarity == 1.0  # same checksum: an exact copy
