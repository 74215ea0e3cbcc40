"""The probes' generated samples, kept beside eval.json (EVAL.samples.jsonl, ltm.sample/1), so a
reader can check what the probes counted and recount it (`recount`).

Each sample keeps its probe events and every hit, and each hit says whether its words are a lens
frame's own words (`frame_overlap`: the hit's text, folded, occurs inside one of the built-in lens
frames of its language, src/ltm/data/lenses/LANG.yaml): a model trained under lenses that repeats
"The questions this passage asks:" fires self_questioning by copying a frame, not by asking.

A probe's model rate comes with an exact Poisson 95% interval on its event count (Garwood):
rates per 1,000 tokens rest on a handful of events at this scale, and the interval says how few.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from ltm.eval.probes import PROBES, _events, _fold, _normalise, load_probes
from ltm.formats import GeneratedSample, ProbeHit
from ltm.io import iter_jsonl
from ltm.log import error
from ltm.markup.lenses import FRAME_LANGUAGES


@lru_cache(maxsize=None)
def frame_texts(lang: str) -> tuple[str, ...]:
    """Every built-in lens frame of `lang` (the English ones for a language without its own), folded."""
    name = lang if lang in FRAME_LANGUAGES else "en"
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.append(" ".join(_fold(node).split()))

    walk(yaml.safe_load(resources.files("ltm").joinpath(f"data/lenses/{name}.yaml").read_text(encoding="utf-8")))
    return tuple(found)


def probe_hits(text: str, lang: str) -> tuple[dict[str, int], list[ProbeHit]]:
    """Events per probe (adjacent matches merged, as the rates count them) and every match."""
    text = _normalise(text)
    folded = _fold(text)
    frames = frame_texts(lang)
    counts, hits = {}, []
    for name, probe in load_probes(lang).probes.items():
        spans = probe.spans(text, folded)
        counts[name] = _events(spans, text)
        for start, end in sorted(spans):
            words = " ".join(folded[start:end].split())
            hits.append(ProbeHit(probe=name, start=start, end=end, text=text[start:end],
                                 frame_overlap=bool(words) and any(words in frame for frame in frames)))
    return counts, hits


def sample_records(prompts: Sequence[str], langs: Sequence[str], texts: Sequence[str], raw: Sequence[str],
                   count_tokens: Callable[[str], int]) -> list[GeneratedSample]:
    records = []
    for prompt, lang, text, with_markers in zip(prompts, langs, texts, raw):
        counts, hits = probe_hits(text, lang)
        records.append(GeneratedSample(prompt=prompt, lang=lang, text=text, raw=with_markers, tokens=count_tokens(text),
                                       events=counts, hits=hits))
    return records


def poisson_ci(k: int, level: float = 0.95) -> tuple[float, float]:
    """Garwood's exact interval for the mean of a Poisson count k, by bisection on the CDF."""
    tail = (1 - level) / 2

    def cdf(n: int, mean: float) -> float:  # P(X <= n)
        if mean == 0:
            return 1.0
        term = total = math.exp(-mean)
        for i in range(1, n + 1):
            term *= mean / i
            total += term
        return total

    def solve(f: Callable[[float], float]) -> float:  # f is decreasing in the mean; its root
        low, high = 0.0, 10.0 + 10 * k
        for _ in range(100):
            mid = (low + high) / 2
            low, high = (mid, high) if f(mid) > 0 else (low, mid)
        return (low + high) / 2

    lower = 0.0 if k == 0 else solve(lambda m: tail - (1 - cdf(k - 1, m)))  # P(X >= k) = tail
    upper = solve(lambda m: cdf(k, m) - tail)  # P(X <= k) = tail
    return lower, upper


def probe_counts(records: Sequence[GeneratedSample]) -> dict[str, dict]:
    """Per probe: events, tokens, the rate per 1,000 tokens and its Poisson 95% interval, hits and
    the hits that are a lens frame's words."""
    tokens = sum(r.tokens for r in records)
    out = {}
    for name in PROBES:
        events = sum(r.events.get(name, 0) for r in records)
        low, high = poisson_ci(events)
        hits = [h for r in records for h in r.hits if h.probe == name]
        scale = 1000 / tokens if tokens else 0.0
        out[name] = {"events": events, "tokens": tokens, "rate": events * scale, "rate_ci95": [low * scale, high * scale],
                     "hits": len(hits), "hits_in_frames": sum(h.frame_overlap for h in hits)}
    return out


def recount(path: str | Path) -> dict[str, dict]:
    """The probe counts of a kept samples file, counted again from its texts with today's probes."""
    records = []
    for line, record, problem in iter_jsonl(path):
        try:
            if problem is not None:
                raise ValueError(problem)
            sample = GeneratedSample.model_validate(record)
        except ValueError as exc:  # the other samples are still counted
            error(f"{path}: line {line} is not a sample (ltm.sample/1) and is left out: {str(exc).splitlines()[0]}")
            continue
        counts, hits = probe_hits(sample.text, sample.lang)
        records.append(sample.model_copy(update={"events": counts, "hits": hits}))
    return probe_counts(records)
