"""Exact and near-duplicate documents: the first one seen is kept, later copies are skipped.

Near duplicates are found with MinHash over word 5-gram shingles and LSH banding: two editions of
one book, or a chat exported twice with a message more, land in the same bucket, and a candidate is
a duplicate when its estimated Jaccard similarity reaches the threshold. All of it is a few numpy
steps (no MinHash library, whose import pulled in scipy and cost `ltm ingest` about a second).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

NUM_PERM = 128
# 16 bands of 8 rows: a pair at similarity 0.85 shares a band with probability 1 - (1 - 0.85^8)^16
# = 0.994; pairs below the threshold that share one are dropped by the full estimate.
BANDS, ROWS = 16, 8
SHINGLE = 5
# Long documents hash a consistent 1/8 of their shingles (those whose hash is 0 mod 8): the same
# shingles are kept in every document, so Jaccard estimates hold, at an eighth of the cost.
SAMPLE_ABOVE = 4000
SAMPLE_MOD = 8


@dataclass
class Duplicate:
    kept: str  # source of the document that stays
    similarity: float  # 1.0 for an exact copy, else the estimated Jaccard similarity


def shingle_hashes(text: str) -> np.ndarray:
    """32-bit hashes of word 5-grams, combined from per-word CRC32s with numpy (no string joins)."""
    # Whitespace tokens of the UTF-8 bytes: several times faster than a word regex over str.
    found = text.lower().encode("utf-8").split()
    words = np.fromiter(map(zlib.crc32, found), dtype=np.uint64, count=len(found))
    if len(words) < SHINGLE:
        return np.unique(words) if len(words) else np.zeros(1, dtype=np.uint64)
    hashes = np.zeros(len(words) - SHINGLE + 1, dtype=np.uint64)
    for k in range(SHINGLE):
        hashes = (hashes * np.uint64(1_000_003) + words[k : len(words) - SHINGLE + 1 + k]) & np.uint64(0xFFFFFFFF)
    if len(hashes) > SAMPLE_ABOVE:
        hashes = hashes[hashes % np.uint64(SAMPLE_MOD) == 0]
    return np.unique(hashes)


_MERSENNE = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(1)
# The universal hash family (a*x + b) mod p, p = 2^61 - 1: one (a, b) per permutation, fixed forever.
_A = _rng.integers(1, int(_MERSENNE), NUM_PERM, dtype=np.uint64)
_B = _rng.integers(0, int(_MERSENNE), NUM_PERM, dtype=np.uint64)


def _minhash(text: str) -> np.ndarray:
    """The MinHash signature (NUM_PERM minima of 32-bit permuted shingle hashes), in one numpy step per chunk."""
    signature = np.full(NUM_PERM, 0xFFFFFFFF, dtype=np.uint64)
    hashes = shingle_hashes(text)
    for start in range(0, len(hashes), 8192):  # bounded memory: 8192 x 128 x 8 bytes at a time
        chunk = hashes[start : start + 8192, None]
        permuted = ((chunk * _A + _B) % _MERSENNE) & np.uint64(0xFFFFFFFF)
        signature = np.minimum(signature, permuted.min(axis=0))
    return signature


class DuplicateFinder:
    def __init__(self, threshold: float = 0.85):
        self.threshold = threshold
        self._exact: dict[str, str] = {}
        self._buckets: list[dict[bytes, list[str]]] = [{} for _ in range(BANDS)]
        self._signatures: dict[str, np.ndarray] = {}

    def check(self, key: str, sha256: str, text: str) -> Duplicate | None:
        """Return the duplicate finding for this document, or None and remember it as kept."""
        if sha256 in self._exact:
            return Duplicate(self._exact[sha256], 1.0)
        signature = _minhash(text)
        bands = [signature[b * ROWS : (b + 1) * ROWS].tobytes() for b in range(BANDS)]
        candidates = dict.fromkeys(other for band, buckets in zip(bands, self._buckets) for other in buckets.get(band, ()))
        for other in candidates:
            similarity = float(np.mean(signature == self._signatures[other]))
            if similarity >= self.threshold:
                return Duplicate(other, round(similarity, 3))
        self._exact[sha256] = key
        for band, buckets in zip(bands, self._buckets):
            buckets.setdefault(band, []).append(key)
        self._signatures[key] = signature
        return None
