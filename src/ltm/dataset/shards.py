"""Token shards and the provenance of every token range.

Shards are raw little-endian uint16/uint32 arrays (`numpy.memmap` reads them, as in nanoGPT and
llm.c), at most `shard_tokens` each. Provenance is columnar (`segments_<split>.npz`): one row per
scene occurrence with its token range, document, scene, lens, pass, phase and how many times the
text had been seen before; the manifest holds the name tables the integer columns index. The loss
mask is a list of token ranges (`masked_<split>.npz`, columns start and end): the targets there are
read but not learned (the user's turns and the system prompt of a dialogue in chat form).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ltm.dataset.reader import SEGMENT_COLUMNS



@dataclass
class ShardWriter:
    folder: Path
    split: str
    dtype: str
    shard_tokens: int
    limit: int | None = None  # stop after exactly this many tokens
    written: int = 0
    shards: list[tuple[str, int]] = field(default_factory=list)
    _buffer: list[np.ndarray] = field(default_factory=list)
    _buffered: int = 0
    _rows: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in SEGMENT_COLUMNS})
    masked: list[list[int]] = field(default_factory=list)  # [start, end) ranges, merged when they touch

    @property
    def full(self) -> bool:
        return self.limit is not None and self.written >= self.limit

    def add(self, ids: np.ndarray, provenance: dict[str, int] | None, learn: bool = True) -> None:
        """Append tokens (cut at the limit); `provenance` None marks tokens of no scene (end of text,
        a system prompt); `learn` False puts them under the loss mask."""
        if self.limit is not None:
            ids = ids[: self.limit - self.written]
        if not len(ids):
            return
        if not learn:
            if self.masked and self.masked[-1][1] == self.written:
                self.masked[-1][1] += len(ids)
            else:
                self.masked.append([self.written, self.written + len(ids)])
        if provenance is not None:
            self._rows["start"].append(self.written)
            self._rows["end"].append(self.written + len(ids))
            for key, value in provenance.items():
                self._rows[key].append(value)
        self.written += len(ids)
        while len(ids):
            room = self.shard_tokens - self._buffered
            self._buffer.append(ids[:room])
            self._buffered += len(ids[:room])
            ids = ids[room:]
            if self._buffered == self.shard_tokens:
                self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        name = f"{self.split}_{len(self.shards):03d}.bin"
        np.concatenate(self._buffer).astype(self.dtype).tofile(self.folder / name)
        self.shards.append((name, self._buffered))
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        arrays = {key: np.asarray(values, dtype=np.int64) for key, values in self._rows.items()}
        np.savez(self.folder / f"segments_{self.split}.npz", **arrays)
        ranges = np.asarray(self.masked, dtype=np.int64).reshape(-1, 2)
        np.savez(self.folder / f"masked_{self.split}.npz", start=ranges[:, 0], end=ranges[:, 1])

    @property
    def masked_tokens(self) -> int:
        return sum(end - start for start, end in self.masked)
