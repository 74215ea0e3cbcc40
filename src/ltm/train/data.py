"""Batches over the token shards, in the order the build wrote them.

The build decides order and repetition (curriculum, regimes); the loader only cuts the stream into
consecutive windows, so what the model reads is exactly what the manifest says.
"""

from __future__ import annotations

import numpy as np
import torch


class SequentialBatches:
    """Batch k holds windows k*B .. k*B+B-1 of length seq_len+1 (stride seq_len), wrapping at the end."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int):
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.windows = (len(tokens) - 1) // seq_len
        if self.windows < 1:
            raise ValueError(f"{len(tokens)} tokens are too few for one window of {seq_len + 1}")

    def epochs(self, steps: int) -> float:
        return steps * self.batch_size / self.windows

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = step * self.batch_size
        starts = [((first + i) % self.windows) * self.seq_len for i in range(self.batch_size)]
        rows = np.stack([self.tokens[s : s + self.seq_len + 1].astype(np.int64) for s in starts])
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]


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
