"""What a run config needs besides a valid shape, checked before any stage runs: the lenses it
names exist, its held-out lenses are built-in, and every input path it names is there.

`ltm run` asks before it makes its run folder; `ltm experiment` asks for every cell before the
first one runs, so a typo in the last cell is not found hours in. Nothing here reads the data.
"""

from __future__ import annotations

from ltm.config import RunConfig
from ltm.markup import GENERATIVE_LENSES
from ltm.markup.lenses import check_lenses


def problems(config: RunConfig) -> list[str]:
    """One message per thing that would stop a run of `config`, each naming the field."""
    found: list[str] = []
    build = config.build
    try:
        check_lenses([step.lens for step in build.lenses])
    except ValueError as exc:
        found.append(f"build.lenses: {exc}")
    try:
        check_lenses(build.heldout_lenses)
    except ValueError as exc:
        found.append(f"build.heldout_lenses: {exc}")
    generative = [lens for lens in build.heldout_lenses if lens in GENERATIVE_LENSES]
    if generative:
        found.append(f"build.heldout_lenses: {generative} need a model's text; held-out documents take built-in lenses only")
    if not config.ingest.paths and not config.facts.people:
        found.append("ingest.paths is empty and there is no fact set: name the files or folders to train on")
    found += _missing("ingest.paths", config, config.ingest.paths)
    if config.initiation.mode != "none":
        if not config.initiation.paths:
            found.append(f"initiation.mode is {config.initiation.mode} but initiation.paths is empty: name the dialogue texts to initiate on")
        found += _missing("initiation.paths", config, config.initiation.paths)
    # eval.wikitext is not among them: an optional reference, skipped with a note in eval.json when
    # absent (the examples name the shared corpora's copy, which a fresh clone lacks).
    for key in ("prompts", "control"):
        found += _missing(f"eval.{key}", config, [getattr(config.eval, key)] if getattr(config.eval, key) else [])
    found += _missing("eval.qa.path", config, [config.eval.qa.path] if config.eval.qa.path else [])
    if build.tokenizer and not (config.resolve(build.tokenizer) / "tokenizer.json").exists():
        found.append(f"build.tokenizer: {config.resolve(build.tokenizer)} holds no tokenizer.json")
    return found


def _missing(field: str, config: RunConfig, paths: list[str]) -> list[str]:
    return [f"{field}: {config.resolve(p)} does not exist" for p in paths if not config.resolve(p).exists()]
