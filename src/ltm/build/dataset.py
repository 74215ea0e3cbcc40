"""Turn scenes into a training dataset: held-out split, tokenizer, token shards and a manifest.

Layout of DATASET_DIR (see docs/formats.md):
    tokenizer/          HF tokenizer (loads with AutoTokenizer)
    train_000.bin       token ids, little-endian uint16/uint32, documents in build order
    heldout_000.bin     the held-out documents, same encoding
    manifest.json       shards, provenance of every token range, statistics
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from ltm.build.tokenizer import EOT, SCENE_BEGIN, SCENE_END, save_tokenizer, tokenizer_sha256, train_tokenizer
from ltm.config import BuildConfig
from ltm.formats import Manifest, Scene, Segment, ShardInfo
from ltm.io import atomic_write, write_json
from ltm.log import info


class BuildError(ValueError):
    """Input that cannot make a dataset, with what to change."""


def split_heldout(scenes: list[Scene], fraction: float, seed: int) -> set[str]:
    """Pick held-out documents per language (at least one where a language has two or more)."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    for scene in scenes:
        if scene.doc_id not in by_lang[scene.lang]:
            by_lang[scene.lang].append(scene.doc_id)
    heldout: set[str] = set()
    for lang, docs in sorted(by_lang.items()):
        if len(docs) < 2:
            continue
        ranked = sorted(docs, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
        heldout.update(ranked[: max(1, round(fraction * len(docs)))])
    return heldout


def _group_by_doc(scenes: list[Scene]) -> dict[str, list[Scene]]:
    docs: dict[str, list[Scene]] = defaultdict(list)
    for scene in scenes:
        docs[scene.doc_id].append(scene)
    for doc_scenes in docs.values():
        doc_scenes.sort(key=lambda s: s.index)
    return docs


def _encode_split(doc_ids: list[str], docs: dict[str, list[Scene]], hf, split: str):
    """Token ids of the split and one Segment per scene; each document opens with EOT."""
    eot, begin, end = (hf.convert_tokens_to_ids(t) for t in (EOT, SCENE_BEGIN, SCENE_END))
    ordered = [s for d in doc_ids for s in docs[d]]
    encoded = hf.backend_tokenizer.encode_batch([s.text for s in ordered], add_special_tokens=False)
    ids: list[int] = []
    segments: list[Segment] = []
    previous_doc = None
    for scene, enc in zip(ordered, encoded):
        if scene.doc_id != previous_doc:
            ids.append(eot)
            previous_doc = scene.doc_id
        start = len(ids)
        ids.append(begin)
        ids.extend(enc.ids)
        ids.append(end)
        segments.append(
            Segment(split=split, start=start, end=len(ids), doc_id=scene.doc_id, scene_id=scene.scene_id,
                    phase=scene.meta.get("phase"))
        )
    return ids, segments


def build_dataset(scenes: list[Scene], config: BuildConfig, seed: int, out_dir: str | Path) -> Manifest:
    out_dir = Path(out_dir)
    if not scenes:
        raise BuildError("no scenes to build from: run `ltm scenes` on a DOCS.jsonl with text first")
    docs = _group_by_doc(scenes)
    heldout = split_heldout(scenes, config.heldout_docs, seed)
    if not heldout:
        raise BuildError("no document could be held out: give at least two documents of one language")
    train_ids = sorted(d for d in docs if d not in heldout)
    random.Random(seed).shuffle(train_ids)
    heldout_ids = sorted(heldout)

    tokenizer = train_tokenizer((s.text for d in train_ids for s in docs[d]), config.vocab_size)
    hf = save_tokenizer(tokenizer, out_dir / "tokenizer")
    vocab = len(hf)
    dtype = config.dtype if config.dtype != "auto" else ("uint16" if vocab <= 2**16 else "uint32")
    if dtype == "uint16" and vocab > 2**16:
        raise BuildError(f"vocab_size {vocab} does not fit uint16: set build.dtype to uint32")

    shards, segments, stats = [], [], {}
    for split, doc_ids in (("train", train_ids), ("heldout", heldout_ids)):
        ids, split_segments = _encode_split(doc_ids, docs, hf, split)
        name = f"{split}_000.bin"
        with atomic_write(out_dir / name, "wb") as handle:
            handle.write(np.asarray(ids, dtype=dtype).tobytes())
        shards.append(ShardInfo(path=name, split=split, tokens=len(ids)))
        segments.extend(split_segments)
        text_bytes = sum(len(s.text.encode("utf-8")) for d in doc_ids for s in docs[d])
        stats[split] = {"documents": len(doc_ids), "scenes": len(split_segments), "tokens": len(ids), "text_bytes": text_bytes}
        info(f"  {split}: {len(doc_ids)} documents, {len(split_segments)} scenes, {len(ids):,} tokens")

    manifest = Manifest(
        tokenizer="tokenizer",
        tokenizer_sha256=tokenizer_sha256(out_dir / "tokenizer"),
        vocab_size=vocab,
        dtype=dtype,
        seed=seed,
        shards=shards,
        segments=segments,
        heldout_docs=heldout_ids,
        stats=stats,
    )
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def load_manifest(dataset_dir: str | Path) -> Manifest:
    path = Path(dataset_dir) / "manifest.json"
    if not path.exists():
        raise BuildError(f"{dataset_dir}: no manifest.json; build the dataset with `ltm build` first")
    return Manifest.model_validate_json(path.read_text(encoding="utf-8"))


def load_split(dataset_dir: str | Path, manifest: Manifest, split: str) -> np.ndarray:
    """All tokens of a split as one array (memory-mapped shards, concatenated in order)."""
    parts = [np.memmap(Path(dataset_dir) / s.path, dtype=manifest.dtype, mode="r") for s in manifest.shards if s.split == split]
    if not parts:
        return np.zeros(0, dtype=manifest.dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
