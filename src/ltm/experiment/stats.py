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
