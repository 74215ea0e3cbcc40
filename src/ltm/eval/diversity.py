"""Diversity of generated text: distinct-1 and distinct-2 (unique n-grams over all n-grams, across
all samples, Li et al. 2016) and the repetition rate (the share of a sample's 4-grams that repeat
an earlier 4-gram of the same sample, averaged over samples)."""

from __future__ import annotations


def _ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def diversity(samples: list[list[int]]) -> dict[str, float]:
    result = {}
    for n in (1, 2):
        grams = [g for ids in samples for g in _ngrams(ids, n)]
        result[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    repeats = []
    for ids in samples:
        grams = _ngrams(ids, 4)
        if grams:
            repeats.append(1 - len(set(grams)) / len(grams))
    result["repetition_rate"] = sum(repeats) / len(repeats) if repeats else 0.0
    return result
