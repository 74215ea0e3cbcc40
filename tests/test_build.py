import hashlib

import numpy as np
import pytest
from transformers import AutoTokenizer

from ltm.build import BuildError, build_dataset, load_manifest
from ltm.build.dataset import load_split, split_heldout
from ltm.build.tokenizer import SCENE_BEGIN, SCENE_END, token_byte_lengths
from ltm.config import BuildConfig, ScenesConfig
from ltm.ingest import ingest_paths
from ltm.scenes import make_scenes


@pytest.fixture
def scenes(corpus):
    return make_scenes(ingest_paths([corpus]).documents, ScenesConfig(min_tokens=10, max_tokens=60), [])


def _build(scenes, out, seed=7):
    return build_dataset(scenes, BuildConfig(vocab_size=400, heldout_docs=0.3), seed, out)


def test_manifest_segments_map_tokens_to_scenes(scenes, tmp_path):
    manifest = _build(scenes, tmp_path / "ds")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "ds" / "tokenizer"))
    by_id = {s.scene_id: s for s in scenes}
    for split in ("train", "heldout"):
        tokens = load_split(tmp_path / "ds", manifest, split)
        segments = [s for s in manifest.segments if s.split == split]
        assert segments and segments[-1].end == len(tokens)
        for seg in segments:
            ids = tokens[seg.start : seg.end].tolist()
            assert ids[0] == tokenizer.convert_tokens_to_ids(SCENE_BEGIN)
            assert ids[-1] == tokenizer.convert_tokens_to_ids(SCENE_END)
            assert tokenizer.decode(ids[1:-1]) == by_id[seg.scene_id].text
            assert seg.phase == by_id[seg.scene_id].meta["phase"]


def test_heldout_documents_are_not_trained_on(scenes, tmp_path):
    manifest = _build(scenes, tmp_path / "ds")
    train_docs = {s.doc_id for s in manifest.segments if s.split == "train"}
    heldout_docs = {s.doc_id for s in manifest.segments if s.split == "heldout"}
    assert heldout_docs == set(manifest.heldout_docs)
    assert not train_docs & heldout_docs
    # One per language at least.
    assert {d.split("_")[0] for d in heldout_docs} == {"en", "ru"}


def test_same_seed_gives_identical_shards_other_seed_other_order(scenes, tmp_path):
    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.bin"))}

    _build(scenes, tmp_path / "a", seed=3)
    _build(scenes, tmp_path / "b", seed=3)
    _build(scenes, tmp_path / "c", seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_tokenizer_round_trips_russian_and_english(scenes, tmp_path):
    _build(scenes, tmp_path / "ds")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "ds" / "tokenizer"))
    for text in ["Помним ли мы прошлое? Ёлка, «кавычки» — тире.", "Can a thing be measured? \t  spaces\nnew line", "日本語 😀"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
        lengths = token_byte_lengths(tokenizer)
        assert lengths[ids].sum() == len(text.encode("utf-8"))


def test_uint16_shards_and_stats(scenes, tmp_path):
    manifest = _build(scenes, tmp_path / "ds")
    assert manifest.dtype == "uint16"
    assert (tmp_path / "ds" / "train_000.bin").stat().st_size == 2 * manifest.split_tokens("train")
    assert manifest.stats["train"]["documents"] + manifest.stats["heldout"]["documents"] == 6
    assert load_manifest(tmp_path / "ds") == manifest


def test_refuses_empty_input_and_single_document(scenes, tmp_path):
    with pytest.raises(BuildError, match="no scenes"):
        _build([], tmp_path / "x")
    one_doc = [s for s in scenes if s.doc_id == scenes[0].doc_id]
    with pytest.raises(BuildError, match="held out"):
        _build(one_doc, tmp_path / "y")


def test_split_heldout_is_per_language(scenes):
    held = split_heldout(scenes, 0.01, seed=1)
    assert len(held) == 2
    assert np.unique([d.split("_")[0] for d in held]).tolist() == ["en", "ru"]
