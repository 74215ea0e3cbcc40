"""The data stages on datatrove (extra `scale`): files -> documents -> scenes as pipeline steps on
the local executor, in several tasks, giving what ltm's one-machine stages give."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("datatrove")

from conftest import write_corpus  # noqa: E402

from ltm.config import ScenesConfig  # noqa: E402
from ltm.formats import Document, Scene  # noqa: E402
from ltm.ingest.pipeline import ingest_paths  # noqa: E402
from ltm.scale import recipes  # noqa: E402
from ltm.scale.steps import GutenbergStrip, MojibakeRepair, from_row, shard_paths, to_row  # noqa: E402
from ltm.scenes.pipeline import scenes_of  # noqa: E402

GUTENBERG = ("The Project Gutenberg EBook of A Test, by Nobody\n\nTitle: A Test\n\nAuthor: Nobody\n\nLanguage: English\n\n"
             "*** START OF THIS PROJECT GUTENBERG EBOOK A TEST ***\n\n\nCHAPTER I\n\nThe book itself, which asks what a chapter is.\n\n"
             "*** END OF THIS PROJECT GUTENBERG EBOOK A TEST ***\n\nThe Full Project Gutenberg License\n")


def records(folder: Path, cls):
    return [cls.model_validate(json.loads(line)) for path in shard_paths(folder) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def corpus(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    (folder / "metadata.yaml").unlink()  # sidecar tags are the one-machine path's (documented)
    shutil.copy(folder / "en_1.md", folder / "en_1_again.md")  # an exact copy
    text = (folder / "ru_2.md").read_text(encoding="utf-8")
    (folder / "ru_2_edited.md").write_text(text.replace("море", "озеро", 1), encoding="utf-8")  # a near copy
    (folder / "book.txt").write_text(GUTENBERG, encoding="utf-8")
    (folder / "empty.txt").write_text("  \n", encoding="utf-8")  # a bad file: counted, the batch goes on
    (folder / "notes.bin").write_bytes(b"\x00\x01")  # not a format ltm reads: skipped
    return folder


@pytest.mark.parametrize("dedup", ["minhash", "task"])
def test_datatrove_stages_give_the_documents_and_scenes_of_the_one_machine_path(corpus, tmp_path, dedup):
    config = ScenesConfig(min_tokens=10, max_tokens=60)
    tasks = 3 if dedup == "minhash" else 1  # ltm's MinHash sees duplicates within one task
    out = recipes.run(corpus, tmp_path / "out", tasks=tasks, workers=1, scenes=config, dedup=dedup)
    one_machine = ingest_paths([corpus]).documents
    documents = records(tmp_path / "out" / "unique", Document)
    assert sorted(d.text for d in documents) == sorted(d.text for d in one_machine)
    assert sorted(d.id for d in documents) == sorted(d.id for d in one_machine)
    book = next(d for d in documents if d.source.endswith("book.txt"))
    assert book.text.startswith("CHAPTER I") and book.author == "Nobody" and "Gutenberg" not in book.text
    if dedup == "minhash":
        assert len(shard_paths(tmp_path / "out" / "documents")) == 3
        assert len(records(tmp_path / "out" / "duplicates", Document)) == 2
    scenes = records(out, Scene)
    expected = [s for d in one_machine for s in scenes_of(d, config)]
    assert sorted((s.scene_id, s.text) for s in scenes) == sorted((s.scene_id, s.text) for s in expected)
    by_id = {s.scene_id: s for s in scenes}
    assert any(s.references for s in scenes)
    assert all(by_id[r.scene_id].doc_id == s.doc_id and by_id[r.scene_id].index < s.index for s in scenes for r in s.references)


def test_repair_steps_fix_documents_from_other_readers():
    from ltm.ingest.pipeline import finish
    from ltm.ingest.raw import RawDocument

    broken = "Помним ли мы прошлое?".encode("utf-8").decode("cp1251")
    rows = [to_row(finish(RawDocument(text=broken, format="jsonl"), "dump.jsonl", {})),
            to_row(finish(RawDocument(text=GUTENBERG, format="jsonl"), "dump.jsonl", {}))]
    fixed = [from_row(row) for row in GutenbergStrip()(MojibakeRepair()(iter(rows)))]
    assert fixed[0].text == "Помним ли мы прошлое?" and fixed[0].encoding.repaired
    assert fixed[1].text.startswith("CHAPTER I") and fixed[1].author == "Nobody"
    assert all(Document.model_validate(d.model_dump(by_alias=True)).sha256 != "" for d in fixed)


def test_cli_runs_the_pipeline_and_a_cluster_gets_the_same_stages_chained(corpus, tmp_path, capsys):
    from ltm.cli import main

    assert main(["pipeline", str(corpus), "-o", str(tmp_path / "out"), "--dedup", "none", "--tasks", "2", "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "scenes")
    assert len(shard_paths(tmp_path / "out" / "scenes")) == 2 and records(tmp_path / "out" / "scenes", Scene)
    # On Slurm the same stages become array jobs, each depending on the one before (submitted by .run()).
    chain = recipes.executors(recipes.stages(corpus, tmp_path / "slurm", 4), tmp_path / "slurm", "slurm",
                              cluster=recipes.Cluster(partition="cpu", venv_path="/opt/ltm/.venv"))
    assert [type(e).__name__ for e in chain] == ["SlurmPipelineExecutor"] * 4
    assert [e.world_size for e in chain] == [4, 14, 1, 4] and all(b.depends is a for a, b in zip(chain, chain[1:]))


def test_build_reads_scene_shards_as_it_reads_one_file(corpus, tmp_path, tiny_config, monkeypatch):
    from ltm import stages
    from ltm.config import load_config
    from ltm.dataset import scenes_table
    from ltm.dataset.reader import load_manifest

    config = load_config(tiny_config)
    out = recipes.run(corpus, tmp_path / "out", tasks=3, workers=1, scenes=config.scenes, dedup="none")
    whole = tmp_path / "scenes.jsonl"
    whole.write_text("".join(p.read_text(encoding="utf-8") for p in shard_paths(out)), encoding="utf-8")
    stages.build(config, whole, tmp_path / "one")
    monkeypatch.setattr(scenes_table, "TEXT_CACHE_BYTES", 0)  # texts read back from the shards by offset
    stages.build(config, Path(f"{out}/*.jsonl"), tmp_path / "glob")
    stages.build(config, out, tmp_path / "folder")
    one = load_manifest(tmp_path / "one")
    for name in ("glob", "folder"):
        assert load_manifest(tmp_path / name) == one
        assert all((tmp_path / name / s.path).read_bytes() == (tmp_path / "one" / s.path).read_bytes() for s in one.shards)
    with pytest.raises(stages.StageError, match="no scene file"):
        stages.build(config, tmp_path / "nothing" / "*.jsonl", tmp_path / "none")
