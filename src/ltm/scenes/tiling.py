"""Lexical cohesion, TextTiling-style (Hearst 1997): where the vocabulary before a gap differs from
the vocabulary after it, the topic is likely to shift there.

Used by the segmenter (gaps between paragraphs) and by the TextTiling baseline of
bench/scenes_quality.py (gaps between pseudo-sentences). Words are compared by their first five
letters, which stand in for a stem since Russian inflection changes endings; any script works
(NLTK's TextTiling drops Cyrillic).
"""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
from scipy import sparse

WORD = re.compile(r"\w{3,}")
STEM = 5


def lower_keeping_offsets(text: str) -> str:
    """text.lower(), except that the few letters whose lower case is longer (İ) stay as they are,
    so that offsets into the result are offsets into `text`."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def stems(lowered: str, start: int = 0, end: int | None = None, stop: frozenset[str] = frozenset()) -> list[str]:
    """The stems of the words in lowered[start:end], leaving out `stop` words (function words say
    nothing about the topic); the caller lower-cases the text once."""
    return [w[:STEM] for w in WORD.findall(lowered, start, len(lowered) if end is None else end) if w not in stop]


def gap_similarities(words: list[str], gaps: np.ndarray, block: int) -> np.ndarray:
    """Cosine similarity, at each gap (a word index), of the `block` words before it and the
    `block` words after it, as bags of words. Sparse products, no Python loop over gaps."""
    if not words or len(gaps) == 0:
        return np.zeros(len(gaps))
    hashes = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint32, count=len(words))
    ids = np.unique(hashes, return_inverse=True)[1].ravel()
    n_words, vocab = len(ids), int(ids.max()) + 1
    offsets = np.arange(block)

    def bag(positions: np.ndarray) -> sparse.csr_matrix:
        gap_of = np.repeat(np.arange(len(gaps)), block)
        positions = positions.ravel()
        keep = (positions >= 0) & (positions < n_words)
        return sparse.csr_matrix((np.ones(keep.sum()), (gap_of[keep], ids[positions[keep]])), shape=(len(gaps), vocab))

    left = bag(gaps[:, None] - 1 - offsets)
    right = bag(gaps[:, None] + offsets)
    dot = np.asarray(left.multiply(right).sum(axis=1)).ravel()
    norms = np.sqrt(np.asarray(left.multiply(left).sum(axis=1)).ravel() * np.asarray(right.multiply(right).sum(axis=1)).ravel())
    return np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)


def depth_scores(similarities: list[float]) -> list[float]:
    """At each valley of the similarity curve (a gap no more similar than its neighbours), how far
    it dips below the peaks on either side; other gaps score 0, so a slow drift of topic makes one
    boundary at its lowest point rather than one at every gap."""
    depths = [0.0] * len(similarities)
    for g, score in enumerate(similarities):
        if (g > 0 and similarities[g - 1] < score) or (g + 1 < len(similarities) and similarities[g + 1] < score):
            continue
        left_peak = score
        for other in reversed(similarities[:g]):
            if other < left_peak:
                break
            left_peak = other
        right_peak = score
        for other in similarities[g + 1 :]:
            if other < right_peak:
                break
            right_peak = other
        depths[g] = (left_peak - score) + (right_peak - score)
    return depths


def cutoff(depths: list[float], floor: float = 0.0) -> float:
    """Hearst's cutoff, mean - std/2 over the valleys' depths (at least `floor`)."""
    valleys = [d for d in depths if d > 0]
    if not valleys:
        return math.inf
    mean = sum(valleys) / len(valleys)
    std = math.sqrt(sum((d - mean) ** 2 for d in valleys) / len(valleys))
    return max(mean - std / 2, floor)
