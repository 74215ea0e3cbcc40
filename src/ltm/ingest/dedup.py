"""Exact and near-duplicate documents: the first one seen is kept, later copies are skipped.

Near duplicates are found with MinHash over word 5-gram shingles and LSH (datasketch): two
editions of one book, or a chat exported twice with a message more, land in the same bucket.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
SHINGLE = 5
# Long documents hash a consistent 1/8 of their shingles (those whose hash is 0 mod 8): the same
# shingles are kept in every document, so Jaccard estimates hold, at an eighth of the cost.
SAMPLE_ABOVE = 4000
SAMPLE_MOD = 8


@dataclass
class Duplicate:
    kept: str  # source of the document that stays
    similarity: float  # 1.0 for an exact copy, else the estimated Jaccard similarity


def _shingle_hashes(text: str) -> np.ndarray:
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


def _minhash(text: str) -> MinHash:
    """datasketch's MinHash, its signature computed in one numpy step from the shingle hashes."""
    signature = MinHash(num_perm=NUM_PERM, seed=1)
    a, b = signature.permutations
    hashes = _shingle_hashes(text)
    for start in range(0, len(hashes), 8192):  # bounded memory: 8192 x 128 x 8 bytes at a time
        chunk = hashes[start : start + 8192, None]
        permuted = ((chunk * a + b) % _MERSENNE) & np.uint64(0xFFFFFFFF)
        signature.hashvalues = np.minimum(signature.hashvalues, permuted.min(axis=0))
    return signature


class DuplicateFinder:
    def __init__(self, threshold: float = 0.85):
        self.threshold = threshold
        self._exact: dict[str, str] = {}
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._signatures: dict[str, MinHash] = {}

    def check(self, key: str, sha256: str, text: str) -> Duplicate | None:
        """Return the duplicate finding for this document, or None and remember it as kept."""
        if sha256 in self._exact:
            return Duplicate(self._exact[sha256], 1.0)
        signature = _minhash(text)
        for other in self._lsh.query(signature):
            similarity = signature.jaccard(self._signatures[other])
            if similarity >= self.threshold:
                return Duplicate(other, round(similarity, 3))
        self._exact[sha256] = key
        self._lsh.insert(key, signature)
        self._signatures[key] = signature
        return None
