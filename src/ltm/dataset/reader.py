"""Reading a built dataset: its manifest, its splits' tokens, their provenance and loss mask, and
windows over a split. What every later stage (train, eval) needs of DATASET_DIR, and nothing of
how it was built (docs/formats.md, "Dataset")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ltm.formats import Manifest

SEGMENT_COLUMNS = ("start", "end", "doc", "scene", "lens", "pass_index", "times_seen", "phase")


class DatasetError(ValueError):
    """A dataset folder that cannot be read, with what to do."""


def load_manifest(dataset_dir: str | Path) -> Manifest:
    path = Path(dataset_dir) / "manifest.json"
    if not path.exists():
        raise DatasetError(f"{dataset_dir}: no manifest.json; build the dataset with `ltm build` first")
    return Manifest.model_validate_json(path.read_text(encoding="utf-8"))


def load_split(dataset_dir: str | Path, manifest: Manifest, split: str) -> np.ndarray:
    """All tokens of a split as one array (memory-mapped shards, concatenated in order)."""
    parts = [np.memmap(Path(dataset_dir) / s.path, dtype=manifest.dtype, mode="r") for s in manifest.shards if s.split == split]
    if not parts:
        return np.zeros(0, dtype=manifest.dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def load_segments(dataset_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    with np.load(Path(dataset_dir) / f"segments_{split}.npz") as data:
        return {key: data[key] for key in SEGMENT_COLUMNS}


def load_masked(dataset_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The loss mask's (starts, ends), token offsets into the split; empty for a dataset built
    before masks existed."""
    path = Path(dataset_dir) / f"masked_{split}.npz"
    if not path.exists():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    with np.load(path) as data:
        return data["start"], data["end"]


def repetition_bucket(times: int) -> str:
    """0, 1, 2-3, 4-7, 8-15, ...: a repetition count in powers of two (build statistics, memorization)."""
    if times < 2:
        return str(times)
    low = 1 << (times.bit_length() - 1)
    return f"{low}-{2 * low - 1}"


def eval_windows(tokens: np.ndarray, seq_len: int, limit: int | None = None) -> list[np.ndarray]:
    """Non-overlapping windows of seq_len+1 covering the split (the last one may be shorter)."""
    windows = []
    for start in range(0, max(len(tokens) - 1, 0), seq_len):
        window = np.asarray(tokens[start : start + seq_len + 1], dtype=np.int64)
        if len(window) >= 2:
            windows.append(window)
        if limit is not None and len(windows) >= limit:
            break
    return windows
