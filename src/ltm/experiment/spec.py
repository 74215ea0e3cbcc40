"""The experiment file: a base config, the axes to vary and the seeds; every cell gets the same
token budget.

    name: repetition
    base: ../examples/quickstart.yaml       # relative to this file
    workspace: ../experiments/repetition    # runs and the SQLite registry (default: experiments/<name>)
    seeds: [1, 2, 3]
    budget_tokens: 400000                   # written into every cell's build section
    parallel: 4                             # cells at once per GPU (default: from free memory; 1 on CPUs)
    axes:
      regime:
        unique: {build: {regime: unique}}
        epochs_4: {build: {regime: {corpus_epochs: 4}}}
        spiral_12: {build: {regime: {spiral: 12}}}
      initiation:
        none: {}
        lora: {initiation: {mode: lora, paths: [dialogues]}}

A cell is one value per axis; its config is the base with each value's overrides merged in (nested
mappings merge, anything else replaces), the seed and the budget set. The config hash names it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from ltm.config import ConfigError, ExperimentSpec, RunConfig, absolute_inputs
from ltm.preflight import problems


@dataclass
class Cell:
    name: str  # "regime=unique,initiation=lora"
    values: dict[str, str]
    seed: int
    config: dict  # the merged config, as YAML would hold it

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def run_name(self) -> str:
        safe = "_".join(f"{v}" for v in self.values.values()) or "base"
        return f"{safe}-s{self.seed}-{self.config_hash[:8]}"


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_spec(path: Path) -> tuple[ExperimentSpec, Path]:
    try:
        spec = ExperimentSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return spec, path.resolve().parent


def cells(spec: ExperimentSpec, folder: Path) -> list[Cell]:
    """Every cell of the grid, each seed; every config validated and preflighted (ltm.preflight)
    before any run starts, every problem of every cell reported at once."""
    base_path = (folder / spec.base).resolve()
    # Relative input paths keep pointing where they did: the base's from its folder, an axis's from
    # the experiment file's.
    base = absolute_inputs(yaml.safe_load(base_path.read_text(encoding="utf-8")) or {}, base_path.parent)
    base.setdefault("ingest", {}).setdefault("paths", [])  # the cells' hashes have always seen it set
    axes = [(axis, {value: absolute_inputs(override, folder) for value, override in values.items()}) for axis, values in spec.axes.items()]
    combos = []
    for combo in itertools.product(*[list(values.items()) for _, values in axes]) if axes else [()]:
        config = base
        for _, override in combo:
            config = merge(config, override)
        combos.append(({axis: value for (axis, _), (value, _) in zip(axes, combo)}, config))
    out, refused = [], []
    # Seed by seed: every cell of seed 1 before any of seed 2, so the paired comparison completes one
    # seed at a time (a grid stopped early still pairs), and cells run side by side share their seed.
    for seed in spec.seeds:
        for values, config in combos:
            cell_config = merge(config, {"seed": seed, "name": spec.name})
            if spec.budget_tokens:
                cell_config = merge(cell_config, {"build": {"budget_tokens": spec.budget_tokens}})
            name = ",".join(f"{a}={v}" for a, v in values.items()) or "base"
            try:
                found = problems(RunConfig.model_validate(cell_config))
            except ValidationError as exc:
                found = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            refused += [f"cell {name} seed {seed}: {problem}" for problem in found]
            out.append(Cell(name, values, seed, cell_config))
    if refused:  # every cell's problems at once, before any cell runs
        raise ConfigError(f"{len(refused)} problem(s); no cell was run:\n  " + "\n  ".join(refused))
    return out
