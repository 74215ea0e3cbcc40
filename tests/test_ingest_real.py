"""Ingest on the real files in ../shared/corpora (skipped, with the reason, where that folder is absent)."""

import pytest

from conftest import SHARED_CORPORA
from ltm.ingest import ingest_paths

pytestmark = pytest.mark.skipif(not SHARED_CORPORA.is_dir(), reason="../shared/corpora not present: real-file ingest tests need it")


def _one(path):
    result = ingest_paths([SHARED_CORPORA / path])
    assert not result.errors, result.errors
    (doc,) = result.documents
    return doc


def test_windows_1251_poem_is_detected():
    doc = _one("ru/pushkin_ruslan_i_lyudmila.txt")
    assert doc.encoding.detected == "cp1251"
    assert doc.lang == "ru"
    assert "РУСЛАН И ЛЮДМИЛА" in doc.text[:200]
    assert "Для вас, души моей царицы,\nКрасавицы, для вас одних" in doc.text  # verse keeps its lines


@pytest.mark.parametrize("name", ["nietzsche_ecce_homo.txt", "nietzsche_beyond_good_and_evil.txt", "plato_republic.txt"])
def test_gutenberg_books_lose_their_boilerplate(name):
    doc = _one(f"en/{name}")
    assert doc.lang == "en" and doc.author and doc.title
    assert "\r" not in doc.text and "\ufeff" not in doc.text
    assert "PROJECT GUTENBERG" not in doc.text.upper()
    assert "gutenberg:boilerplate removed" in doc.encoding.repaired
    # Hard-wrapped lines were joined: paragraphs are much longer than a typewriter line.
    paragraphs = doc.text.split("\n\n")
    assert max(len(p) for p in paragraphs) > 1000


def test_plato_paragraph_is_rejoined():
    doc = _one("en/plato_republic.txt")
    assert "the longest of his works with the exception of the Laws, and is certainly the greatest" in doc.text
    assert doc.encoding.detected == "utf-8"


def test_bom_crlf_file_reads_as_utf8_sig():
    assert _one("en/nietzsche_the_antichrist.txt").encoding.detected == "utf-8-sig"


def test_one_paragraph_per_line_prose_and_the_whole_russian_folder():
    result = ingest_paths([SHARED_CORPORA / "ru" / "tolstoy_publicism", SHARED_CORPORA / "ru" / "herzen_s_togo_berega.txt"])
    assert not result.errors
    assert len(result.documents) == 27
    assert {d.lang for d in result.documents} == {"ru"}
    herzen = next(d for d in result.documents if "herzen" in d.source)
    assert herzen.text.count("\n\n") > 200
