"""The bundled sample corpus keeps its promises: 20+ texts, ru and en, 80+ KB, every file tagged."""

from pathlib import Path

import yaml

from ltm.ingest import ingest_paths

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def test_sample_corpus_size_languages_and_metadata():
    texts = sorted(p for p in CORPUS.rglob("*.md"))
    assert len(texts) >= 20
    assert sum(p.stat().st_size for p in texts) >= 80_000
    meta = yaml.safe_load((CORPUS / "metadata.yaml").read_text(encoding="utf-8"))["files"]
    assert set(meta) == {p.relative_to(CORPUS).as_posix() for p in texts}
    assert {m["phase"] for m in meta.values()} == {"myth", "drama", "logic", "irony"}
    assert all(m.get("author") for m in meta.values())


def test_sample_corpus_ingests_cleanly_in_both_languages():
    result = ingest_paths([CORPUS])
    assert not result.errors
    langs = [d.lang for d in result.documents]
    assert langs.count("ru") >= 10 and langs.count("en") >= 10
    assert {d.meta["kind"] for d in result.documents} >= {"dialogue", "essay", "aphorisms", "chat"}
