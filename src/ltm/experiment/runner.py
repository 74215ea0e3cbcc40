"""`ltm experiment EXP.yaml`: run every cell of the grid, each in its own process, and record it.

Finished cells (same config hash, status done) are skipped; an interrupted or failed cell is run
again with `ltm run --resume`, which keeps the stages it already finished and continues training
from its last checkpoint. Cells share their data stages through WORKSPACE/shared (`ltm run --shared`,
ltm.experiment.shared): each distinct ingest, scenes, tokenizer and build is made once. With several GPUs, one cell runs per GPU (CUDA_VISIBLE_DEVICES); on one
GPU or on CPUs, cells run one after another.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from ltm.experiment.metrics import run_metrics
from ltm.experiment.registry import Registry
from ltm.experiment.report import write_experiment_report
from ltm.experiment.spec import Cell, cells, load_spec
from ltm.log import error, info


def workspace_of(spec, folder: Path) -> Path:
    return (folder / spec.workspace).resolve() if spec.workspace else Path("experiments").resolve() / spec.name


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def run_experiment(path: Path, workers: int | None = None) -> Path:
    spec, folder = load_spec(path)
    grid = cells(spec, folder)  # every config is validated before anything runs
    workspace = workspace_of(spec, folder)
    registry = Registry(workspace / "ltm.sqlite")
    todo: list[tuple[int, Cell, Path]] = []
    for cell in grid:
        run_dir = workspace / "runs" / cell.run_name
        row = registry.register(spec.name, cell.name, cell.seed, cell.config_hash, cell.config, run_dir)
        if row["status"] == "done":
            info(f"skip {cell.name} seed {cell.seed}: done ({run_dir})")
            continue
        todo.append((row["id"], cell, run_dir))
    gpus = _gpus()
    workers = workers or max(gpus, 1)
    info(f"experiment {spec.name}: {len(grid)} runs, {len(grid) - len(todo)} done, {len(todo)} to run, {workers} at a time -> {workspace}")
    slots = list(range(workers))
    started = time.perf_counter()

    def one(job: tuple[int, Cell, Path]) -> None:
        run_id, cell, run_dir = job
        slot = slots.pop()
        try:
            env = dict(os.environ)
            if gpus > 1:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            _run_cell(registry_path=workspace / "ltm.sqlite", run_id=run_id, cell=cell, run_dir=run_dir, env=env)
        finally:
            slots.append(slot)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, todo))
    report = write_experiment_report(Registry(workspace / "ltm.sqlite"), spec.name, workspace)
    info(f"experiment {spec.name}: finished in {time.perf_counter() - started:.0f}s; report: {report}")
    return workspace


def _run_cell(registry_path: Path, run_id: int, cell: Cell, run_dir: Path, env: dict) -> None:
    registry = Registry(registry_path)  # one connection per thread
    config_path = run_dir.parent.parent / "configs" / f"{cell.run_name}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(cell.config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    registry.mark(run_id, "running")
    info(f"run {cell.name} seed {cell.seed} -> {run_dir}")
    log = run_dir.parent.parent / "logs" / f"{cell.run_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        code = subprocess.call([sys.executable, "-m", "ltm.cli", "run", str(config_path), "--run-dir", str(run_dir), "--resume",
                                "--shared", str(run_dir.parent.parent / "shared")],
                               stdout=handle, stderr=subprocess.STDOUT, env=env)
    if code == 0 and (run_dir / "eval.json").exists():
        registry.mark(run_id, "done", metrics=run_metrics(run_dir))
    else:
        tail = log.read_text(encoding="utf-8")[-1500:]
        registry.mark(run_id, "failed", error=tail)
        error(f"{cell.name} seed {cell.seed} failed (exit {code}); log: {log}")
