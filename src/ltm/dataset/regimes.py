"""Repetition regimes: which texts are read, how often and in what order, under one token budget.

A regime turns ordered units (loops or documents) into a stream of *occurrences* — one scene read
once under one lens — that the shard writer consumes until the budget is spent. Every regime is
cut at exactly the budget, so runs compare at equal tokens.

With budget B and a regime that reads each selected text R times, about B/R tokens of distinct
text are selected (stratified by phase, seeded), then:

- `unique` (R=1): every unit once; refused when the data is smaller than the budget.
- `corpus_epochs: K`: the selected corpus, in reading order, K times over (a verbatim copy each time).
- `doc_consecutive: K`: each document K times in a row before the next.
- `chunk_epochs: {k, size}`: the selection cut into chunks of `size` tokens; each chunk k times in a
  row before the next chunk.
- `spiral: K`: K passes over the selection, pass p under the lens the schedule gives for p.
When the passes run out before the budget (lenses shorter than expected), they go on cycling.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ltm.dataset.curriculum import Unit, order
from ltm.config import BuildConfig, LensStep


class RegimeError(ValueError):
    pass


@dataclass(frozen=True)
class Occurrence:
    scene: int  # index into the scene list
    lens: str
    pass_index: int
    phase: str
    unit_start: bool  # the first scene of a unit: an end-of-text token goes before it


def lens_for_pass(schedule: list[LensStep], pass_index: int) -> str:
    """The lens of pass `pass_index` (0-based); the schedule cycles."""
    period = sum(step.passes for step in schedule)
    position = pass_index % period
    for step in schedule:
        if position < step.passes:
            return step.lens
        position -= step.passes
    raise AssertionError("unreachable: position is below the period")


def select(units: list[Unit], counts: np.ndarray, target: float, seed: int) -> list[Unit]:
    """About `target` tokens of units, the same share from every phase, chosen at random (seeded)."""
    total = sum(u.tokens(counts) for u in units)
    if target >= total:
        return list(units)
    rng = random.Random(seed + 1)
    chosen: list[Unit] = []
    for phase in dict.fromkeys(u.phase for u in units):
        members = [u for u in units if u.phase == phase]
        share = target * sum(u.tokens(counts) for u in members) / total
        rng.shuffle(members)
        taken = 0
        for unit in members:
            if taken >= share and taken > 0:
                break
            chosen.append(unit)
            taken += unit.tokens(counts)
    return chosen


def _scenes_of(unit: Unit, lens: str, pass_index: int) -> Iterator[Occurrence]:
    for n, scene in enumerate(unit.scenes):
        yield Occurrence(scene, lens, pass_index, unit.phase, unit_start=n == 0)


def occurrences(
    units: list[Unit], phases: list[str], config: BuildConfig, counts: np.ndarray, budget: int, seed: int,
    expansion: float = 1.0,
) -> Iterator[Occurrence]:
    """The stream, endless for repeating regimes (the writer stops at the budget).

    `expansion` is how many tokens a lens pass takes per plain token on average (spiral only), so
    that the selection leaves room for K passes.
    """
    regime = config.regime
    curriculum = config.curriculum
    data_tokens = sum(u.tokens(counts) + 1 for u in units if not u.replayed)  # + the end-of-text token per unit
    first_lens = config.lenses[0].lens
    if regime.unique:
        if data_tokens < budget:
            raise RegimeError(
                f"budget_tokens={budget:,} is more than the {data_tokens:,} tokens of training text: under regime "
                "unique every token is read once. Lower build.budget_tokens or choose a repeating regime."
            )
        for unit in order(units, phases, curriculum, counts, seed):
            yield from _scenes_of(unit, first_lens, 0)
        return
    selected = select(units, counts, budget / (regime.repeats * expansion), seed)
    ordered = order(selected, phases, curriculum, counts, seed)
    if not any(u.tokens(counts) for u in ordered):
        raise RegimeError("no training text to repeat")
    if regime.corpus_epochs:
        for epoch in _count():
            for unit in ordered:
                yield from _scenes_of(unit, first_lens, epoch)
    elif regime.doc_consecutive:
        while True:
            for unit in ordered:
                for copy in range(regime.doc_consecutive):
                    yield from _scenes_of(unit, first_lens, copy)
    elif regime.chunk_epochs:
        chunks, current, size = [], [], 0
        for unit in ordered:
            current.append(unit)
            size += unit.tokens(counts)
            if size >= regime.chunk_epochs.size:
                chunks.append(current)
                current, size = [], 0
        if current:
            chunks.append(current)
        while True:
            for chunk in chunks:
                for epoch in range(regime.chunk_epochs.k):
                    for unit in chunk:
                        yield from _scenes_of(unit, first_lens, epoch)
    else:
        for pass_index in _count():
            lens = lens_for_pass(config.lenses, pass_index)
            for unit in ordered:
                yield from _scenes_of(unit, lens, pass_index)


def _count() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1
