"""Resumable checkpoints: written atomically every N steps and at the end, the last few kept.

A checkpoint folder holds the model (save_pretrained), the optimizer states, the step, the random
number generators' states and a fingerprint of everything that shapes the loss curve (model and
training config, seed, dataset). `--resume` refuses a checkpoint whose fingerprint differs.

Under FSDP the model and optimizer states are not gathered: every rank writes its shards through
torch.distributed.checkpoint into the checkpoint's `dcp/` folder (on storage all nodes see), and a
resume loads them resharded to however many processes run then, one included.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from contextlib import nullcontext
from pathlib import Path

import torch

from ltm.io import atomic_dir
from ltm.train import distributed

# Fields that may change between a run and its resumption: those that leave the loss curve as it
# is, and the speed section, which only rounds differently (a run started on a GPU with FP8 may have
# to finish on one without, or on CPUs).
RESUMABLE_CHANGES = {"eval_every", "checkpoint_every", "keep_checkpoints", "logger", "threads", "device", "speed"}


def fingerprint(config, manifest) -> str:
    train = config.train.model_dump(exclude=RESUMABLE_CHANGES)
    data = {"tokenizer": manifest.tokenizer_sha256, "shards": [s.model_dump() for s in manifest.shards], "seed": manifest.seed}
    blob = json.dumps({"model": config.model.model_dump(), "train": train, "seed": config.seed, "data": data}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def folder_for(out_dir: Path, step: int) -> Path:
    return out_dir / "checkpoints" / f"step_{step:07d}"


# The folder of a sharded checkpoint's model and optimizer states.
SHARDED = "dcp"


def save(out_dir: Path, step: int, model, model_state: dict, optimizer_states: list[dict], print_: str, keep: int) -> Path:
    """`model_state` and `optimizer_states` are full (unsharded) states, gathered by every rank."""
    target = folder_for(out_dir, step)
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp), state_dict=model_state)
        _write_trainer(tmp, step, print_, {"optimizers": optimizer_states})
    _prune(out_dir, keep)
    return target


def save_sharded(out_dir: Path, step: int, model, optimizers: list, world, print_: str, keep: int) -> Path:
    """A checkpoint of a sharded model, each rank writing its own shards; every rank calls this."""
    target = folder_for(out_dir, step)
    with atomic_dir(target) if world.main else nullcontext() as tmp:
        tmp = distributed.shared_path(tmp, world)
        distributed.save_sharded(tmp / SHARDED, model, optimizers)
        if world.main:
            _write_trainer(tmp, step, print_, {}, sharded=True)
    if world.main:
        _prune(out_dir, keep)
    distributed.barrier(world)
    return target


def _write_trainer(folder: Path, step: int, print_: str, state: dict, sharded: bool = False) -> None:
    torch.save({**state, "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, folder / "trainer.pt")
    (folder / "trainer.json").write_text(json.dumps({"step": step, "fingerprint": print_, "sharded": sharded}))


def _prune(out_dir: Path, keep: int) -> None:
    for old in sorted((out_dir / "checkpoints").glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# What a training run leaves in its folder: a later run there either resumes it or starts over.
RUN_OUTPUTS = ("checkpoints", "checkpoint", "metrics.jsonl", "tensorboard")


def earlier_run(out_dir: Path) -> list[str]:
    """The outputs of an earlier run in `out_dir`, by name; empty when there are none."""
    return [name for name in RUN_OUTPUTS if (out_dir / name).exists()]


def clear_run(out_dir: Path) -> None:
    for name in earlier_run(out_dir):
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def latest(out_dir: Path) -> Path | None:
    found = sorted(p for p in (out_dir / "checkpoints").glob("step_*") if re.fullmatch(r"step_\d+", p.name) and (p / "trainer.json").exists())
    return found[-1] if found else None


def read_state(folder: Path) -> tuple[dict, dict]:
    """(trainer.json, the states to resume from); a sharded checkpoint's states name its `dcp/`
    folder under "sharded", to be loaded once the model is wrapped (ltm.train.loop)."""
    meta = json.loads((folder / "trainer.json").read_text())
    state = torch.load(folder / "trainer.pt", weights_only=False)
    if meta.get("sharded"):
        state["sharded"] = folder / SHARDED
    return meta, state
