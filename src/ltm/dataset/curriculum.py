"""The reading order: which texts come first, grouped into phases, with replay of earlier phases.

The unit of order is a *loop* (consecutive scenes that form one reasoning arc) or, for
`doc_consecutive` and for a dialogue read in the chat form, a whole document: units are shuffled
and ordered, never split, so a conversation's turns keep their order.

- `shuffle`: one phase, units in random order (the baseline).
- `by: tag`: phases from a document tag (phase: myth, drama, logic, irony), in the order listed.
- `by: difficulty`: phases are difficulty levels of the units (mean of their scenes' scores),
  easiest first, or hardest first with `hardest_first` (the control).
Within a phase units are shuffled; with `replay > 0`, each phase after the first also re-reads
units drawn from earlier phases, about `replay` of its own tokens, spread through it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from ltm.dataset.difficulty import levels
from ltm.dataset.scenes_table import SceneInfo
from ltm.config import Curriculum
from ltm.markup import LOOP_STEPS

CLAIM, DOUBT, _, NEW_DIRECTION = LOOP_STEPS
MAX_LOOP_SCENES = 8  # an arc that never reaches a new direction is closed here


class CurriculumError(ValueError):
    pass


@dataclass
class Unit:
    scenes: list[int]  # indices into the scene list, in text order
    doc_id: str
    phase: str = "all"
    replayed: bool = False
    lang: str = ""
    tags: dict = field(default_factory=dict)  # the document's tags (its scenes' meta)

    def tokens(self, counts: np.ndarray) -> int:
        return int(counts[self.scenes].sum())


def group_loops(scenes: list[SceneInfo], indices: list[int]) -> list[list[int]]:
    """Split one document's scenes into loops: an arc opens at a scene with a claim or a doubt and
    closes at the scene that shows a new direction (or after MAX_LOOP_SCENES); other scenes stand alone."""
    units: list[list[int]] = []
    current: list[int] = []
    for i in indices:
        steps = scenes[i].loop
        if current:
            current.append(i)
            if NEW_DIRECTION in steps or len(current) >= MAX_LOOP_SCENES:
                units.append(current)
                current = []
        elif (CLAIM in steps or DOUBT in steps) and NEW_DIRECTION not in steps:
            current = [i]
        else:
            units.append([i])
    if current:
        units.append(current)
    return units


def make_units(scenes: list[SceneInfo], doc_ids: list[str], whole_documents: bool, whole_dialogues: bool = False) -> list[Unit]:
    by_doc: dict[str, list[int]] = {d: [] for d in doc_ids}
    for i, scene in enumerate(scenes):
        if scene.doc_id in by_doc:
            by_doc[scene.doc_id].append(i)
    units = []
    for doc_id in doc_ids:
        indices = sorted(by_doc[doc_id], key=lambda i: scenes[i].index)
        dialogue = whole_dialogues and bool(indices) and scenes[indices[0]].turn_role is not None
        groups = [indices] if whole_documents or dialogue else group_loops(scenes, indices)
        first = scenes[indices[0]] if indices else None
        units.extend(Unit(g, doc_id, lang=first.lang, tags=first.meta) for g in groups if g)
    return units


def assign_phases(units: list[Unit], scenes: list[SceneInfo], config: Curriculum, difficulty: np.ndarray | None = None) -> list[str]:
    """Set unit.phase; return the phase names in reading order. Refuses tags outside the phases
    and phases without any text. `difficulty` holds one score per scene (by: difficulty)."""
    if config.by == "shuffle":
        return ["all"]
    if config.by == "tag":
        missing: dict[str, str] = {}
        for unit in units:
            value = str(scenes[unit.scenes[0]].meta.get(config.key, ""))
            if value not in config.phases:
                missing.setdefault(value or "(no tag)", unit.doc_id)
            unit.phase = value
        if missing:
            listed = ", ".join(f"{v!r} (e.g. {d})" for v, d in missing.items())
            raise CurriculumError(f"documents tagged {config.key}={listed} are not in curriculum.phases {config.phases}: add the phase or tag the documents")
        phases = list(config.phases)
    else:
        unit_scores = np.array([difficulty[u.scenes].mean() for u in units])
        phases = [f"level-{n + 1}" for n in range(config.levels)]
        for unit, level in zip(units, levels(unit_scores, config.levels)):
            unit.phase = phases[level]
        if config.hardest_first:
            phases.reverse()
    empty = [p for p in phases if not any(u.phase == p for u in units)]
    if empty:
        raise CurriculumError(f"curriculum phase(s) {empty} have no text: drop them from the config or add documents")
    return phases


def order(units: list[Unit], phases: list[str], config: Curriculum, counts: np.ndarray, seed: int) -> list[Unit]:
    """Units in reading order: phase by phase, shuffled within each, with replay from earlier phases."""
    rng = random.Random(seed)
    ordered: list[Unit] = []
    for p, phase in enumerate(phases):
        members = [u for u in units if u.phase == phase]
        rng.shuffle(members)
        if config.replay > 0 and p > 0:
            budget = config.replay * sum(u.tokens(counts) for u in members)
            earlier = [u for u in units if u.phase in phases[:p]]
            replayed, total = [], 0
            while total < budget and earlier:
                pick = rng.choice(earlier)
                replayed.append(Unit(pick.scenes, pick.doc_id, phase, replayed=True, lang=pick.lang, tags=pick.tags))
                total += pick.tokens(counts)
            for unit in replayed:
                members.insert(rng.randrange(len(members) + 1), unit)
        ordered.extend(members)
    return ordered
