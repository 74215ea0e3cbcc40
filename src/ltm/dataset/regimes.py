"""Repetition regimes: which texts are read, how often and in what order, under one token budget.

A regime turns ordered units (loops or documents) into a stream of *occurrences* — one scene read
once under one lens — that the shard writer consumes until the budget is spent. Every regime is
cut at exactly the budget, so runs compare at equal tokens.

With budget B and a regime that reads each selected text R times, about B/R tokens of distinct
text are selected (stratified by phase, seeded), then:

- `unique` (R=1): every unit once; refused when the data is smaller than the budget; under a budget
  smaller than the data, a selection of it like the other regimes'.
- `corpus_epochs: K`: the selected corpus, in reading order, K times over (a verbatim copy each time).
- `doc_consecutive: K`: each document K times in a row before the next.
- `chunk_epochs: {k, size}`: the selection cut into chunks of `size` tokens; each chunk k times in a
  row before the next chunk.
- `spiral: K`: K passes over the selection, pass p under the lens the schedule gives for p.
When the passes run out before the budget (lenses shorter than expected), they go on cycling.
- `mixture: {share, target | repeats}`: a target set read pass after pass (under the lens schedule)
  for `share` of the budget, woven through a background read once, whole, for the rest. The target
  is the documents whose tags match `target`, or a seeded selection of share x B / repeats plain
  tokens stratified by language; either way it does not depend on the lenses, so arms that differ
  only in lenses read the same distinct text. Each target occurrence is counted at its exact
  rendered size, so the background always ends before the budget and the cut falls on the target.

A schedule of one pass per lens (`lenses: [{passes: 1, lens: plain}, {passes: 1, lens: scene}, ...]`)
interleaves the lenses: pass i reads under lens i mod L.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
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


def select(units: list[Unit], counts: np.ndarray, target: float, seed: int, by_language: bool = False) -> list[Unit]:
    """At least `target` tokens of units (each with its end-of-text token), chosen at random (seeded),
    every phase (and language, with `by_language`) as close to its share of the data as whole units
    allow; the writer cuts the surplus (under one unit) from the last phase read."""
    size = {id(u): u.tokens(counts) + 1 for u in units}
    total = sum(size.values())
    if target >= total:
        return list(units)
    rng = random.Random(seed + 1)
    chosen: list[Unit] = []
    left: dict[str, list[Unit]] = {}
    share: dict[str, float] = {}
    taken: dict[str, int] = {}
    stratum = (lambda u: (u.phase, u.lang)) if by_language else (lambda u: u.phase)
    for phase in dict.fromkeys(stratum(u) for u in units):
        members = [u for u in units if stratum(u) == phase]
        share[phase] = target * sum(size[id(u)] for u in members) / total
        rng.shuffle(members)
        taken[phase], left[phase] = 0, []
        for unit in members:
            # Take a unit when it brings the phase closer to its share (and always the first one).
            if taken[phase] == 0 or taken[phase] + size[id(unit)] / 2 <= share[phase]:
                chosen.append(unit)
                taken[phase] += size[id(unit)]
            else:
                left[phase].append(unit)
    while sum(taken.values()) < target:  # top up from the phase furthest below its share
        phase = max((p for p in left if left[p]), key=lambda p: (share[p] - taken[p]) / share[p])
        unit = left[phase].pop(0)
        chosen.append(unit)
        taken[phase] += size[id(unit)]
    return chosen


def _scenes_of(unit: Unit, lens: str, pass_index: int) -> Iterator[Occurrence]:
    for n, scene in enumerate(unit.scenes):
        yield Occurrence(scene, lens, pass_index, unit.phase, unit_start=n == 0)


def occurrences(
    units: list[Unit], phases: list[str], config: BuildConfig, counts: np.ndarray, budget: int, seed: int,
    expansion: float = 1.0, cost: Callable[[Occurrence], int] | None = None,
) -> Iterator[Occurrence]:
    """The stream, endless for repeating regimes (the writer stops at the budget).

    `expansion` is how many tokens a lens pass takes per plain token on average (spiral), so that
    the selection leaves room for K passes; `cost` is what writing one occurrence takes (mixture).
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
        if data_tokens > budget:  # a budget below the data: the same share of every phase, room left for replay
            later = sum(u.tokens(counts) + 1 for u in units if u.phase != phases[0]) / data_tokens
            units = select(units, counts, budget / (1 + curriculum.replay * later), seed)
        for unit in order(units, phases, curriculum, counts, seed):
            yield from _scenes_of(unit, first_lens, 0)
        return
    if regime.mixture:
        yield from _mixture(units, phases, config, counts, budget, seed, cost or (lambda o: int(counts[o.scene]) + o.unit_start))
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


def _mixture(units: list[Unit], phases: list[str], config: BuildConfig, counts: np.ndarray, budget: int, seed: int,
             cost: Callable[[Occurrence], int]) -> Iterator[Occurrence]:
    """The background once and the target's passes, woven so each keeps its share of what is written
    so far; a target unit waits while it would overrun the target's part, so the background is read whole."""
    mix = config.regime.mixture
    if mix.target is not None:
        target = [u for u in units if mix.matches(u.tags)]
        if not target:
            raise RegimeError(f"mixture.target {mix.target}: no training document has these tags")
    else:  # chosen on plain tokens, so lenses change how often the target is read, not what it is
        target = select(units, counts, mix.share * budget / mix.repeats, seed + 7, by_language=True)
    chosen = {id(u) for u in target}
    rest = [u for u in units if id(u) not in chosen]
    wanted = (1 - mix.share) * budget
    available = sum(u.tokens(counts) + 1 for u in rest)
    if available < wanted:
        raise RegimeError(f"mixture: the background has {available:,} tokens, less than its {wanted:,.0f} "
                          f"({1 - mix.share:.0%} of budget_tokens={budget:,}); it is read once: lower the budget or the share")
    background = order(select(rest, counts, wanted, seed), phases, config.curriculum, counts, seed)
    target = order(target, phases, config.curriculum, counts, seed)
    if not any(u.tokens(counts) for u in target):
        raise RegimeError("mixture: the target has no text")
    background_tokens = sum(u.tokens(counts) + 1 for u in background)
    target_tokens = max(1, budget - background_tokens)
    passes = ([list(_scenes_of(unit, lens_for_pass(config.lenses, p), p)) for unit in target] for p in _count())
    pending = iter(())
    written_background = written_target = 0
    background_left = iter(background)
    following = next(background_left, None)
    while True:
        step = next(pending, None)
        if step is None:
            pending = iter(next(passes))
            continue
        size = sum(map(cost, step))
        while following is not None and (written_background / background_tokens <= written_target / target_tokens
                                         or written_target + size > target_tokens):
            written_background += following.tokens(counts) + 1
            yield from _scenes_of(following, "plain", 0)
            following = next(background_left, None)
        written_target += size
        yield from step


def _count() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1
