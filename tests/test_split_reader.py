"""The training reader: a split's shards memory-mapped and read by slice, never concatenated; what it
reads is what the concatenated split holds, and statistics over it are computed chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from ltm.dataset.reader import SplitTokens
from ltm.train.data import ShardBatches


@pytest.fixture
def shards(tmp_path):
    """Four shards of uneven length on disk, memory-mapped as `open_split` maps them."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 500, n).astype(np.uint16) for n in (300, 1, 257, 600)]
    parts = []
    for i, array in enumerate(arrays):
        array.tofile(tmp_path / f"train_{i:03d}.bin")
        parts.append(np.memmap(tmp_path / f"train_{i:03d}.bin", dtype="uint16", mode="r"))
    return SplitTokens(parts, "uint16"), np.concatenate(arrays)


def test_slices_read_what_the_concatenated_split_holds(shards):
    split, whole = shards
    assert len(split) == len(whole)
    rng = np.random.default_rng(1)
    cuts = [(0, len(whole)), (299, 302), (300, 301), (301, 558), (0, 0), (1000, 2000), (-5, None)]
    cuts += [tuple(sorted(rng.integers(0, len(whole) + 1, 2))) for _ in range(200)]
    for start, stop in cuts:
        got = split[start:stop]
        assert np.array_equal(got, whole[start:stop]) and got.dtype == whole.dtype, (start, stop)
    assert np.array_equal(np.asarray(split), whole)
    with pytest.raises(TypeError, match="contiguous"):
        split[::2]


def test_counts_are_computed_chunk_by_chunk(shards):
    split, whole = shards
    chunks = list(split.chunks(100))
    assert max(len(c) for c in chunks) == 100 and np.array_equal(np.concatenate(chunks), whole)
    assert np.array_equal(split.counts(512), np.bincount(whole, minlength=512))


def test_batches_over_the_mapped_split_equal_batches_over_the_array(shards):
    split, whole = shards
    for rank in range(2):
        mapped, array = (ShardBatches(t, 16, 8, 2, rank, 2) for t in (split, whole))
        assert mapped.windows == array.windows
        for step in range(12):  # past the end: later passes wrap with shifted cuts
            for micro in range(mapped.accumulation):
                assert all(np.array_equal(a, b) for a, b in zip(mapped.batch(step, micro), array.batch(step, micro)))
