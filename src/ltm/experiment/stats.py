"""Mean and 95% confidence interval over seeds (Student's t: with 3 seeds the interval is wide,
as it should be)."""

from __future__ import annotations

import math

from scipy.stats import t as student_t


def mean_ci(values: list[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95% interval, n); the half-width is nan for a single value."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    n = len(clean)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(clean) / n
    if n == 1:
        return mean, math.nan, 1
    sd = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    return mean, student_t.ppf(0.975, n - 1) * sd / math.sqrt(n), n


def format_ci(mean: float, half: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}")


def paired_item_bootstrap(a: list[list[bool]], b: list[list[bool]], resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean difference b - a in accuracy over the same items, seeds averaged, with a 95% percentile
    interval from resampling the items (the same resample for both arms and every seed).

    `a[s][i]` is whether item i was right in seed s of arm a; every row holds the same items in the
    same order. Returns (difference, low, high)."""
    import numpy as np

    left, right = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if left.shape != right.shape or left.ndim != 2 or not left.size:
        raise ValueError(f"paired items need two equal seeds x items tables, got {left.shape} and {right.shape}")
    per_item = (right - left).mean(axis=0)  # seeds averaged, item by item
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_item), size=(resamples, len(per_item)))
    means = per_item[draws].mean(axis=1)
    return float(per_item.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
