"""Shared data stages: runs whose ingest, scenes and build settings agree make them once, in the cache
folder, and each run folder holds hard links to the same files; a shared build is byte for byte the
build a run makes alone."""

from pathlib import Path

from conftest import TINY_CONFIG
from ltm import stages
from ltm.config import RunConfig
from ltm.experiment.shared import data_keys


def config_for(corpus: Path, **changes) -> RunConfig:
    raw = dict(TINY_CONFIG, ingest={"paths": [str(corpus)]}, data_seed=5)
    raw["build"] = dict(raw["build"], budget_tokens=3000, regime={"corpus_epochs": 2})
    for key, value in changes.items():
        raw[key] = dict(raw[key], **value) if isinstance(value, dict) else value
    return RunConfig.model_validate(raw)


def test_seeds_share_one_build_and_regimes_one_tokenizer(tmp_path, corpus):
    shared = tmp_path / "shared"
    seed_1, seed_2 = config_for(corpus, seed=1), config_for(corpus, seed=2)
    spiral = config_for(corpus, seed=1, build={"regime": {"spiral": 2}})
    other_split = config_for(corpus, seed=1, data_seed=6)
    assert data_keys(seed_1) == data_keys(seed_2)
    assert data_keys(spiral)["tokenizer"] == data_keys(seed_1)["tokenizer"] != data_keys(other_split)["tokenizer"]
    assert data_keys(spiral)["build"] != data_keys(seed_1)["build"]
    # workers change how fast a build runs, not what it writes
    assert data_keys(config_for(corpus, build={"workers": 1}))["build"] == data_keys(seed_1)["build"]

    for n, config in enumerate([seed_1, seed_2, spiral]):
        stages.shared_data(config, shared, tmp_path / f"run{n}")
    made = sorted(p.name.split("-")[0] for p in shared.iterdir() if p.is_dir())
    assert made == ["build", "build", "ingest", "scenes", "tokenizer"]
    for name in (stages.DOCS, stages.SCENES, f"{stages.DATASET}/manifest.json", f"{stages.DATASET}/tokenizer/tokenizer.json"):
        first, second = (tmp_path / "run0" / name).stat(), (tmp_path / "run1" / name).stat()
        assert first.st_ino == second.st_ino and first.st_nlink >= 3, name  # the same file, linked, not copied


def test_a_shared_build_is_the_build_a_run_makes_alone(tmp_path, corpus):
    config = config_for(corpus)
    stages.shared_data(config, tmp_path / "shared", tmp_path / "shared_run")
    stages.ingest(config.ingest.paths, tmp_path / "alone" / stages.DOCS)
    stages.scenes(tmp_path / "alone" / stages.DOCS, tmp_path / "alone" / stages.SCENES, config)
    stages.build(config, tmp_path / "alone" / stages.SCENES, tmp_path / "alone" / stages.DATASET)
    for name in ("tokenizer/tokenizer.json", "train_000.bin", "heldout_000.bin", "segments_train.npz"):
        shared_bytes = (tmp_path / "shared_run" / stages.DATASET / name).read_bytes()
        assert shared_bytes == (tmp_path / "alone" / stages.DATASET / name).read_bytes(), name


def test_the_data_seed_defaults_to_the_seed(corpus):
    assert config_for(corpus, data_seed=None, seed=3).build_seed == 3
    assert config_for(corpus, seed=3).build_seed == 5
