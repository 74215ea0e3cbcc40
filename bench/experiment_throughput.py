"""Runs per hour of a study grid: 12 cells of the Study-1 shape (3 seeds x 4 regimes) run by the
scheduler (`ltm experiment`, `parallel` cells at once per GPU) and one after another as `ltm
experiment` ran them before it (one `ltm run` process per cell, data stages shared), in one command.

    PYTHONPATH=src python bench/experiment_throughput.py            # the Study-1 shape, for a GPU
    PYTHONPATH=src python bench/experiment_throughput.py --tiny     # a tiny model and corpus, for CPUs

The Study-1 shape is experiments/repetition-base.yaml (13.8M parameters, context 512, vocabulary
8192, 188 steps of 32 x 512 tokens, its eval section) with four of experiments/repetition.yaml's
regimes (unique, corpus_epochs 4, chunk_epochs 100 x 10k, spiral 100) and seeds 1-3. The data seed
is fixed, so the seeds of a regime share one build, as docs/experiments.md advises for paired
comparisons. The texts are generated (nothing to download): documents of made-up words in
recurring phrases, enough for `unique` to read its budget once, and another such text in place of
WikiText-2. Each pass makes its own data stages (its own WORK/*/shared), so both pay for them.

Order: the scheduler's pass; the run-to-run noise where it arises, on a shared GPU: the first cell
--copies (4) times more, all at once, with deterministic kernels (train.speed.deterministic, the
default) and again without (on a GPU), which also gives their cost in training time side by side; the sequential
pass, which (full mode) starts no cell that would end after --minutes (8.5) from the start, so the
whole bench fits in 9 minutes: rates are cells run per hour, and the comparison covers the cells
both passes ran. Prints, one JSON line each: runs_per_hour of each pass and
runs_per_hour_ratio_vs_sequential (target 4 on one H100/H200), and the same ratio against the
whole grid's sequential time estimated from the cells it ran (its first cell, which makes the data
stages, plus the mean of the others for each remaining cell); the largest difference between the
passes in a cell's final held-out loss, next to the noise (with deterministic kernels, as the cells
ran): the passes agree when it is at most three times the noise (1e-5 of the loss when the noise is
nil, as on CPUs, where runs repeat exactly); the noise and training time of each kind of kernels; and
per pass the mean seconds per cell of each stage (RUN/times.json: ingest, scenes, build, link,
train, eval, report) and of what lies outside them (process_start: Python, imports, the GPU's
context, exit; for the scheduler, a worker's start falls on its first cell). Exit 1 when a cell
fails or the passes disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, emit  # noqa: E402

from ltm.experiment.spec import cells, load_spec  # noqa: E402

BENCH = "experiment_throughput"
REGIMES = ("unique", "corpus_epochs_4", "chunk_epochs_100", "spiral_100")
SEEDS = [1, 2, 3]
STAGES = ("ingest", "scenes", "build", "link", "train", "eval", "report")
TINY = {  # the same grid at a size two CPU cores run in minutes
    "build": {"vocab_size": 400, "lenses": [{"passes": 2, "lens": "plain"}, {"passes": 2, "lens": "scene"},
                                            {"passes": 1, "lens": "questions"}]},
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 32},
    "train": {"steps": 12, "batch_size": 8, "warmup_steps": 2, "eval_every": 6, "eval_batches": 2},
    "eval": {"memorization_per_bucket": 8, "samples_per_prompt": 1, "sample_tokens": 8, "wikitext_max_tokens": 500,
             "data_sample_tokens": 1000},
}
TINY_BUDGET = 12 * 8 * 32
TINY_REGIMES = {"chunk_epochs_100": {"build": {"regime": {"chunk_epochs": {"k": 4, "size": 500}}}},
                "spiral_100": {"build": {"regime": {"spiral": 5}}}}


def write_texts(folder: Path, documents: int, words: int, seed: int) -> Path:
    """`documents` files of about `words` made-up words each: sentences of recurring phrases drawn
    with Zipf's law from a fixed lexicon, so a model has something to learn and memorize."""
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    lexicon = np.array(sorted({"".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(12000)}))
    phrases = [" ".join(rng.choice(lexicon, size=rng.integers(2, 7))) for _ in range(4000)]
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(documents):
        picks = np.minimum(rng.zipf(1.1, size=words // 4), len(phrases)) - 1
        sentences = [" ".join(phrases[p] for p in picks[i : i + 3]).capitalize() + "." for i in range(0, len(picks), 3)]
        paragraphs = ["\n".join([f"# Book {d}"]), *(" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6))]
        (folder / f"book_{d:03d}.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return folder


def write_grid(work: Path, tiny: bool) -> tuple[Path, Path]:
    """The base config and the experiment file (workspace set by the caller); returns (base, experiment)."""
    base = yaml.safe_load((ROOT / "experiments" / "repetition-base.yaml").read_text(encoding="utf-8"))
    study = yaml.safe_load((ROOT / "experiments" / "repetition.yaml").read_text(encoding="utf-8"))
    documents, words = (12, 2000) if tiny else (60, 46000)  # full: 3.5M training tokens for a budget of 3.08M
    base["ingest"] = {"paths": [str(write_texts(work / "corpus", documents, words, seed=0))]}
    other = write_texts(work / "reference", 1, 1000 if tiny else 40000, seed=1) / "book_000.txt"
    base["eval"]["wikitext"] = str(other)
    base["data_seed"] = 1
    base["out_dir"] = str(work / "unused")
    axes = {name: study["axes"]["regime"][name] for name in REGIMES}
    budget = study["budget_tokens"]
    if tiny:
        for section, values in TINY.items():
            base[section] = {**base[section], **values}
        base["build"].pop("budget_tokens")
        budget = TINY_BUDGET
        axes.update(TINY_REGIMES)
    base_path = work / "base.yaml"
    base_path.write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    spec = {"name": "throughput", "base": str(base_path), "seeds": SEEDS, "budget_tokens": budget, "axes": {"regime": axes}}
    spec_path = work / "experiment.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return base_path, spec_path


def environment() -> dict:
    """The bench's environment for the processes it starts: ltm from this checkout, installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    return env


def start_run(config: dict, run_dir: Path, shared: Path) -> subprocess.Popen:
    """One cell as `ltm experiment` ran it before the scheduler: `ltm run` in a process of its own."""
    config_path = run_dir.parent.parent / "configs" / f"{run_dir.name}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    log = run_dir.parent.parent / "logs" / f"{run_dir.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        return subprocess.Popen([sys.executable, "-m", "ltm.cli", "run", str(config_path), "--run-dir", str(run_dir), "--resume",
                                 "--shared", str(shared)], stdout=handle, stderr=subprocess.STDOUT, env=environment())


def finished(process: subprocess.Popen, run_dir: Path) -> None:
    if process.wait() != 0:
        print(f"cell {run_dir.name} failed (exit {process.returncode}); log: {run_dir.parent.parent / 'logs' / (run_dir.name + '.log')}",
              file=sys.stderr)


def ltm_run(config: dict, run_dir: Path, shared: Path) -> float:
    """One cell in a process of its own, alone; its wall time."""
    began = time.perf_counter()
    finished(start_run(config, run_dir, shared), run_dir)
    return time.perf_counter() - began


def copies(cell, count: int, work: Path, deterministic: bool) -> list[Path]:
    """`count` copies of `cell` at once (processes sharing the GPU, as the scheduler's workers do), with
    or without deterministic kernels (train.speed.deterministic); their run folders."""
    config = json.loads(json.dumps(cell.config))
    config["train"].setdefault("speed", {})["deterministic"] = deterministic
    label = "deterministic" if deterministic else "nondeterministic"
    runs = [work / "runs" / f"{cell.run_name}-{label}-{n}" for n in range(count)]
    for run_dir, process in [(run_dir, start_run(config, run_dir, work / "shared")) for run_dir in runs]:
        finished(process, run_dir)
    return runs


def train_seconds(run_dir: Path) -> float | None:
    path = run_dir / "times.json"
    return json.loads(path.read_text(encoding="utf-8"))["stages"].get("train") if path.exists() else None


def final_heldout_loss(run_dir: Path) -> float | None:
    path = run_dir / "train" / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    losses = [r["heldout_loss"] for r in rows if r.get("heldout_loss") is not None]
    return losses[-1] if losses else None


def breakdown(runs: dict[str, tuple[Path, float]]) -> dict[str, float]:
    """Mean seconds per cell in each stage, and outside them, from each run's times.json and wall time."""
    totals = dict.fromkeys((*STAGES, "process_start"), 0.0)
    for run_dir, wall in runs.values():
        times = json.loads((run_dir / "times.json").read_text(encoding="utf-8")) if (run_dir / "times.json").exists() else None
        if times is None:
            continue
        for stage, seconds in times["stages"].items():
            totals[stage] = totals.get(stage, 0.0) + seconds
        totals["process_start"] += max(0.0, wall - times["total_s"])
    return {stage: seconds / max(len(runs), 1) for stage, seconds in totals.items()}


def sequential(grid, work: Path, deadline: float | None) -> tuple[float, dict[str, tuple[Path, float]]]:
    """The cells one after another; with a deadline (perf_counter), no cell starts that would end after it."""
    began = time.perf_counter()
    runs = {}
    for n, cell in enumerate(grid, 1):
        elapsed = time.perf_counter() - began
        if deadline is not None and runs and time.perf_counter() + elapsed / len(runs) > deadline:
            print(f"sequential: stopped after {len(runs)} cells, the time limit is near", file=sys.stderr, flush=True)
            break
        run_dir = work / "runs" / cell.run_name
        runs[cell.run_name] = (run_dir, ltm_run(cell.config, run_dir, work / "shared"))
        print(f"sequential: {n}/{len(grid)} cells, {time.perf_counter() - began:.0f}s", file=sys.stderr, flush=True)
    return time.perf_counter() - began, runs


def scheduled(spec_path: Path, work: Path, parallel: int | None) -> tuple[float, dict[str, tuple[Path, float]]]:
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["workspace"] = str(work)
    path = work / "experiment.yaml"
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    began = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "ltm.cli", "experiment", str(path), *(["--parallel", str(parallel)] if parallel else [])],
                           env=environment())
    wall = time.perf_counter() - began
    if code != 0:
        print(f"ltm experiment exited {code}; logs: {work / 'logs'}", file=sys.stderr)
    db = sqlite3.connect(work / "ltm.sqlite")
    rows = db.execute("SELECT run_dir, started, finished FROM runs").fetchall()
    return wall, {Path(run_dir).name: (Path(run_dir), (finished or started) - started) for run_dir, started, finished in rows if started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model and corpus (CPUs); else the Study-1 shape (a GPU)")
    parser.add_argument("--parallel", type=int, help="cells at once per GPU for the scheduler (default: its own choice; --tiny: 2)")
    parser.add_argument("--copies", type=int, default=4, help="copies of the first cell run at once to measure the noise")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ltm-experiment-throughput"), help="scratch folder (emptied first)")
    parser.add_argument("--minutes", type=float, help="the sequential pass (run last) starts no cell that would end after this "
                                                      "many minutes from the start (default: 8.5, --tiny: none); the rates are per "
                                                      "cell run, the comparison over the cells both passes ran")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.minutes is None and not args.tiny:
        args.minutes = 8.5
    import shutil

    import torch

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    made = time.perf_counter()
    _, spec_path = write_grid(args.work, args.tiny)
    grid = cells(*load_spec(spec_path))
    print(f"{len(grid)} cells; texts generated in {time.perf_counter() - made:.0f}s", file=sys.stderr, flush=True)
    parallel = args.parallel or (2 if args.tiny else None)
    shape = "tiny" if args.tiny else "study-1"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    common = {"shape": shape, "cells": len(grid), "gpu": gpu}

    sched_wall, sched_runs = scheduled(spec_path, args.work / "scheduled", parallel)
    # Run-to-run noise where it arises, on a shared GPU: the first cell `--copies` times more, all at
    # once, on the scheduler's data, with deterministic kernels (the default) and without.
    first = grid[0]
    first_loss = final_heldout_loss(args.work / "scheduled" / "runs" / first.run_name)
    noise, train_s = {}, {}
    kinds = (True, False) if gpu else (True,)  # on CPUs the switch changes nothing: the kernels repeat anyway
    for deterministic in kinds:
        runs = copies(first, args.copies, args.work / "scheduled", deterministic)
        losses = [final_heldout_loss(run) for run in runs]
        noise[deterministic] = (max(abs(loss - first_loss) for loss in losses)
                                if first_loss is not None and None not in losses else float("nan"))
        times = [t for t in map(train_seconds, runs) if t is not None]
        train_s[deterministic] = sum(times) / len(times) if times else float("nan")
        print(f"{args.copies} copies at once, deterministic {deterministic}: final held-out losses {losses}", file=sys.stderr, flush=True)
    deadline = started + args.minutes * 60 if args.minutes else None
    seq_wall, seq_runs = sequential(grid, args.work / "sequential", deadline)

    seq_rate, sched_rate = len(seq_runs) / seq_wall * 3600, len(sched_runs) / sched_wall * 3600
    emit(BENCH, "runs_per_hour", seq_rate, "runs/h", None, run="sequential (one ltm run process per cell)", wall_s=round(seq_wall, 1),
         cells_run=len(seq_runs), **common)
    emit(BENCH, "runs_per_hour", sched_rate, "runs/h", None, run=f"scheduler (parallel {parallel or 'default'})",
         wall_s=round(sched_wall, 1), **common)
    emit(BENCH, "runs_per_hour_ratio_vs_sequential", sched_rate / seq_rate, "x", 4.0, **common)
    # A sequential pass cut short pays the shared data stages (made by its first cell) over fewer cells than
    # the scheduler's whole grid does: the grid's sequential time is estimated as that first cell plus the
    # mean of the others for each remaining cell, and the ratio given against it too.
    walls = [wall for _, wall in seq_runs.values()]
    if len(walls) >= 2:
        grid_s = walls[0] + sum(walls[1:]) / len(walls[1:]) * (len(grid) - 1)
        emit(BENCH, "runs_per_hour_ratio_vs_sequential_whole_grid", sched_rate / (len(grid) / grid_s * 3600), "x", 4.0,
             sequential_grid_s_estimated=round(grid_s, 1), first_cell_s=round(walls[0], 1),
             other_cells_mean_s=round(sum(walls[1:]) / len(walls[1:]), 1), **common)

    pairs = {name: (final_heldout_loss(seq_runs[name][0]), final_heldout_loss(sched_runs[name][0]) if name in sched_runs else None)
             for name in seq_runs}
    failed = sorted(name for name, (a, b) in pairs.items() if a is None or b is None)
    diffs = {name: abs(a - b) for name, (a, b) in pairs.items() if name not in failed}
    worst = max(diffs.values(), default=float("nan"))
    tolerance = max(3 * noise[True], 1e-5 * first_loss) if first_loss is not None else float("nan")
    agree = not failed and len(sched_runs) == len(grid) and worst <= tolerance
    for deterministic in kinds:
        emit(BENCH, "heldout_loss_noise", noise[deterministic], "nats", None, cell=first.run_name, copies_at_once=args.copies,
             deterministic=deterministic, **common)
    if gpu:
        emit(BENCH, "deterministic_train_time_ratio", train_s[True] / train_s[False], "x", None, copies_at_once=args.copies,
             train_s={"deterministic": round(train_s[True], 2), "nondeterministic": round(train_s[False], 2)}, **common)
    emit(BENCH, "heldout_loss_max_abs_diff_vs_sequential", worst, "nats", None, tolerance=tolerance, agree=agree, failed_cells=failed,
         per_cell={name: [round(a, 6), round(b, 6)] for name, (a, b) in pairs.items() if name not in failed}, **common)
    for run, runs in (("sequential", seq_runs), ("scheduler", sched_runs)):
        for stage, seconds in breakdown(runs).items():
            emit(BENCH, f"seconds_per_cell_{stage}", seconds, "s", None, run=run, **common)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
