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


class SplitTokens:
    """A split's tokens as one read-only sequence over its memory-mapped shards, never concatenated:
    a slice reads only the shards it touches, so a rank holds the pages it reads, not the corpus
    (at ~5.7 bytes per token a 100 GB corpus is ~35 GB if concatenated on every rank)."""

    def __init__(self, parts: list[np.ndarray], dtype: str):
        self.parts, self.dtype = parts, np.dtype(dtype)
        self.offsets = np.cumsum([0] + [len(p) for p in parts])  # offsets[i]: first token of part i

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a split is read by contiguous slices: tokens[start:stop]")
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        last = int(np.searchsorted(self.offsets, stop, side="left"))
        pieces = [self.parts[i][max(start - self.offsets[i], 0) : stop - self.offsets[i]] for i in range(first, last)]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole split in memory: for small splits (held-out, tests), not for training."""
        whole = self[:]
        return whole.astype(dtype) if dtype is not None else whole

    def chunks(self, size: int = 1 << 24):
        """Consecutive pieces of at most `size` tokens: statistics over a split in bounded memory."""
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def counts(self, vocab: int) -> np.ndarray:
        """How many times each token id occurs in the split (int64, length `vocab`), chunk by chunk."""
        total = np.zeros(vocab, dtype=np.int64)
        for chunk in self.chunks():
            total += np.bincount(chunk, minlength=vocab)[:vocab]
        return total


def open_split(dataset_dir: str | Path, manifest: Manifest, split: str) -> SplitTokens:
    """A split's shards, memory-mapped in order (empty when the split has none)."""
    parts = [np.memmap(Path(dataset_dir) / s.path, dtype=manifest.dtype, mode="r") for s in manifest.shards if s.split == split]
    return SplitTokens(parts, manifest.dtype)


def load_split(dataset_dir: str | Path, manifest: Manifest, split: str) -> np.ndarray:
    """All tokens of a split as one array in memory (small splits, tests); training and statistics
    read `open_split`."""
    return np.asarray(open_split(dataset_dir, manifest, split))


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


def training_windows(n_tokens: int, seq_len: int) -> int:
    """Windows of seq_len+1 tokens training cuts a split of `n_tokens` into per pass: one fewer than
    would fit, so every pass can start at its own offset (ltm.train.data.ShardBatches)."""
    return (n_tokens - seq_len) // seq_len


def training_reads(positions: np.ndarray, n_tokens: int, seq_len: int, windows_read: int) -> np.ndarray:
    """How many times training read the token at each of `positions`, when it read `windows_read`
    windows (steps x batch size) in order, wrapping at the end of the split: every pass reads every
    window, the last, partial pass only the first ones."""
    full, extra = divmod(windows_read, max(training_windows(n_tokens, seq_len), 1))
    return full + (np.asarray(positions) // seq_len < extra).astype(np.int64)


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
