"""Batches over the token shards, in the order the build wrote them.

The build decides order and repetition (curriculum, regimes); the loader only cuts the stream into
consecutive windows, so what the model reads is exactly what the manifest says. Step s reads
windows s·B … s·B+B−1 (B = global batch), wrapping at the end with the cuts shifted (a pass beyond
the first re-reads the stream in order, cut at other places); under torchrun each rank takes its
own micro-batches of that same global batch, so the data, and the loss, do not depend on how many
devices share the work. The batch of a step is a pure function of the step: resuming at step s
reads what an uninterrupted run would have read.

Targets under the dataset's loss mask (a dialogue's user turns) are IGNORE_INDEX: read as inputs, never
learned. The loss is a mean over the targets that are learned, across the whole global batch.
"""

from __future__ import annotations

import numpy as np
import torch

from ltm.dataset.reader import eval_windows, training_windows
from ltm.model.modeling import IGNORE_INDEX


class LossMask:
    """Token ranges [start, end) of a split whose targets are not learned (sorted, disjoint)."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray):
        self.starts, self.ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)

    def __bool__(self) -> bool:
        return bool(len(self.starts))

    def covers(self, start: int, stop: int) -> np.ndarray:
        """For each token position in [start, stop): whether it is masked."""
        out = np.zeros(stop - start, dtype=bool)
        first = int(np.searchsorted(self.ends, start, side="right"))
        last = int(np.searchsorted(self.starts, stop, side="left"))
        for s, e in zip(self.starts[first:last], self.ends[first:last]):
            out[max(s, start) - start : min(e, stop) - start] = True
        return out


NO_MASK = LossMask(np.zeros(0), np.zeros(0))


class ShardBatches:
    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, micro_batch: int, rank: int = 0, world: int = 1,
                 mask: LossMask = NO_MASK):
        if batch_size % (micro_batch * world):
            raise ValueError(f"batch_size {batch_size} is not a multiple of micro_batch_size {micro_batch} x {world} devices")
        self.tokens, self.mask = tokens, mask
        self.seq_len = seq_len
        self.batch_size, self.micro_batch, self.rank, self.world = batch_size, micro_batch, rank, world
        self.accumulation = batch_size // (micro_batch * world)
        self.windows = training_windows(len(tokens), seq_len)
        if self.windows < 1:
            raise ValueError(f"{len(tokens)} tokens are too few for windows of {seq_len + 1}")

    def epochs(self, steps: int) -> float:
        return steps * self.batch_size / self.windows

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of this rank's `micro`-th micro-batch of the step."""
        first = step * self.batch_size + (micro * self.world + self.rank) * self.micro_batch
        starts = [self._start(first + i) for i in range(self.micro_batch)]
        rows = np.stack([self.tokens[s : s + self.seq_len + 1].astype(np.int64) for s in starts])
        inputs, targets = rows[:, :-1], rows[:, 1:].copy()
        if self.mask:
            targets[np.stack([self.mask.covers(s + 1, s + self.seq_len + 1) for s in starts])] = IGNORE_INDEX
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def learned(self, step: int) -> int:
        """Targets learned in the step's global batch (on every rank alike): what the loss is a mean over."""
        total = self.batch_size * self.seq_len
        if self.mask:
            starts = (self._start(step * self.batch_size + i) for i in range(self.batch_size))
            total -= sum(int(self.mask.covers(s + 1, s + self.seq_len + 1).sum()) for s in starts)
        return total


    def _start(self, window: int) -> int:
        """Window `window` of the stream: pass p = window // windows reads the same order with its
        windows shifted by a different offset, so text repeated across passes is not always cut at
        the same places (the model would learn the cuts, not the text)."""
        pass_index, position = divmod(window, self.windows)
        return position * self.seq_len + (pass_index * PASS_SHIFT) % self.seq_len


# A shift coprime with common context lengths, so successive passes rarely repeat an offset.
PASS_SHIFT = 37


def loss_windows(tokens: np.ndarray, seq_len: int, limit: int | None = None, mask: LossMask = NO_MASK) -> list[tuple[np.ndarray, np.ndarray]]:
    """The eval_windows as (inputs, targets) for a held-out loss, masked targets IGNORE_INDEX."""
    pairs = []
    for n, window in enumerate(eval_windows(tokens, seq_len, limit)):
        targets = window[1:].copy()
        if mask:
            targets[mask.covers(n * seq_len + 1, n * seq_len + len(window))] = IGNORE_INDEX
        pairs.append((window[:-1], targets))
    return pairs
