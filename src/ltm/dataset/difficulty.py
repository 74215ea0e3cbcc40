"""Per-scene difficulty, from the three signals Zhang et al. (2025) found useful for curricula:
compression ratio (less redundant text is harder), lexical diversity (more distinct words is
harder) and readability (longer sentences of longer words are harder).

Each signal is turned into a rank in [0, 1] over the corpus and the three ranks are averaged, so
no signal's scale dominates; `levels` then cuts the scores into equal-count bins.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
from scipy.stats import rankdata

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?…]+")
_VOWEL_GROUPS = re.compile(r"[aeiouyаеёиоуыэюя]+", re.IGNORECASE)
MATTR_WINDOW = 50  # moving-average type-token ratio: comparable across scene lengths


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(zlib.compress(data, 9)) / max(len(data), 1)


def lexical_diversity(text: str) -> float:
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) <= MATTR_WINDOW:
        return len(set(words)) / max(len(words), 1)
    ratios = [len(set(words[i : i + MATTR_WINDOW])) / MATTR_WINDOW for i in range(0, len(words) - MATTR_WINDOW + 1, 10)]
    return float(np.mean(ratios))


def readability_grade(text: str) -> float:
    """Flesch-Kincaid grade with syllables counted as vowel groups (works for Russian and English)."""
    words = _WORD.findall(text)
    if not words:
        return 0.0
    sentences = max(len(_SENTENCE_END.findall(text)), 1)
    syllables = sum(max(len(_VOWEL_GROUPS.findall(w)), 1) for w in words)
    return 0.39 * len(words) / sentences + 11.8 * syllables / len(words) - 15.59


def _ranks(values: list[float]) -> np.ndarray:
    """Ranks scaled to [0, 1]; equal values share their average rank, so ties land in one level."""
    if len(values) < 2:
        return np.zeros(len(values))
    return (rankdata(values, method="average") - 1) / (len(values) - 1)


def signals(text: str) -> tuple[float, float, float]:
    return compression_ratio(text), lexical_diversity(text), readability_grade(text)


def combine(per_text: list[tuple[float, float, float]]) -> np.ndarray:
    """One score in [0, 1] per text from its signals; higher is harder."""
    return np.mean([_ranks(list(column)) for column in zip(*per_text)], axis=0)




def levels(scores: np.ndarray, n_levels: int) -> np.ndarray:
    """Level 0 (easiest) .. n_levels-1 per score, equal counts per level."""
    ranks = _ranks(list(scores))
    return np.minimum((ranks * n_levels).astype(int), n_levels - 1)
