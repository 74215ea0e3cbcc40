"""`ltm experiment EXP.yaml`: run every cell of the grid and record it, several at once.

Cells run in worker processes (ltm.experiment.worker), `parallel` of them per GPU (the experiment
file's setting, else ltm.experiment.parallel's choice from free memory and the model's size; 1 on
CPUs), each worker taking the next cell when its last is done. With several GPUs each worker is
given one (CUDA_VISIBLE_DEVICES); on CPUs each gets its share of the cores. Processes sharing a GPU
take turns on it unless NVIDIA's MPS runs them side by side: with more than one worker per GPU the
scheduler starts an MPS daemon of its own for them where it can (ltm.experiment.mps; `mps: false`
or --no-mps to leave it out). A failed cell is recorded and the others go on; a worker
that dies is replaced. Finished cells (same config hash, status done) are skipped; an interrupted
or failed cell is run again with resume, which keeps the stages it already finished and continues
training from its last checkpoint. Cells share their data stages through WORKSPACE/shared (`ltm run
--shared`, ltm.experiment.shared): each distinct ingest, scenes, tokenizer and build is made once,
under a lock, also when cells that need it start at the same moment. Before the first cell, the
data stages (ltm.experiment.prepare), the workers' imports and the MPS check run side by side.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import wait
from pathlib import Path

import yaml

from ltm.config import RunConfig
from ltm.experiment.metrics import run_metrics
from ltm.experiment import prepare
from ltm.experiment.mps import mps_daemon, reaches_gpu
from ltm.experiment.parallel import default_parallel, free_gpu_bytes
from ltm.experiment.progress import GridProgress
from ltm.experiment.registry import Registry
from ltm.experiment.report import write_experiment_report
from ltm.experiment.spec import Cell, cells, load_spec
from ltm.experiment.worker import Job, serve
from ltm.log import info


class ExperimentError(ValueError):
    """Some cells of an experiment failed; the message names them and where their logs are."""


def workspace_of(spec, folder: Path) -> Path:
    return (folder / spec.workspace).resolve() if spec.workspace else Path("experiments").resolve() / spec.name


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def pending(spec, grid: list[Cell], workspace: Path, registry: Registry) -> list[tuple[int, Cell, Path]]:
    """Register every cell; return (run id, cell, run folder) of those not done yet."""
    waiting = []
    for cell in grid:
        run_dir = workspace / "runs" / cell.run_name
        row = registry.register(spec.name, cell.name, cell.seed, cell.config_hash, cell.config, run_dir)
        if row["status"] == "done":
            info(f"skip {cell.name} seed {cell.seed}: done ({run_dir})")
            continue
        waiting.append((row["id"], cell, run_dir))
    return waiting


def job_for(cell: Cell, run_dir: Path, workspace: Path) -> Job:
    """The cell's config written into the workspace, and where its run and log go."""
    config_path = workspace / "configs" / f"{cell.run_name}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(cell.config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return Job(config_path, run_dir, workspace / "shared", workspace / "logs" / f"{cell.run_name}.log")


def record(registry: Registry, run_id: int, job: Job, problem: str | None) -> bool:
    """Mark a finished cell done (with its metrics) or failed (with its log's tail); whether it is done."""
    if problem is None and (job.run_dir / "eval.json").exists():
        registry.mark(run_id, "done", metrics=run_metrics(job.run_dir))
        return True
    registry.mark(run_id, "failed", error=job.log.read_text(encoding="utf-8")[-1500:] if job.log.exists() else problem)
    return False


def finish(spec, grid: list[Cell], waiting: list[tuple[int, Cell, Path]], workspace: Path, registry_path: Path, started: float) -> Path:
    """The experiment's report; ExperimentError naming the cells that failed."""
    registry = Registry(registry_path)
    report = write_experiment_report(registry, spec.name, workspace)
    info(f"experiment {spec.name}: finished in {time.perf_counter() - started:.0f}s; report: {report}")
    failed = [f"{cell.name} seed {cell.seed}" for _, cell, _ in waiting if registry.get(spec.name, cell.config_hash)["status"] != "done"]
    if failed:  # the report holds the rest, but the command must not look like a success
        raise ExperimentError(f"experiment {spec.name}: {len(failed)} of {len(grid)} runs failed ({', '.join(failed)}); "
                              f"their logs are in {workspace / 'logs'}")
    return workspace


def run_experiment(path: Path, parallel: int | None = None, mps: bool | None = None) -> Path:
    """Run the grid of PATH, `parallel` cells at once per GPU (default: the file's `parallel`, else
    chosen from free GPU memory; 1 on CPUs), through MPS when `mps` (default: the file's) and more
    than one shares a GPU; return the workspace. The data stages, the workers' start and the MPS
    check run side by side before the first cell."""
    spec, folder = load_spec(path)
    grid = cells(spec, folder)  # every config is validated before anything runs
    workspace = workspace_of(spec, folder)
    waiting = pending(spec, grid, workspace, Registry(workspace / "ltm.sqlite"))
    todo = queue.Queue()
    jobs = [(run_id, cell, job_for(cell, run_dir, workspace)) for run_id, cell, run_dir in waiting]
    for item in jobs:
        todo.put(item)
    making = prepare.start([job for _, _, job in jobs], workspace / "logs")
    configs = [RunConfig.model_validate(c.config) for _, c, _ in waiting]
    # Cells told to train on CPUs run there, GPU or not: they share the cores, not a GPU's memory.
    gpus = 0 if configs and all(c.train.device == "cpu" for c in configs) else _gpus()
    per_gpu = parallel or spec.parallel or default_parallel(configs, free_gpu_bytes() if gpus else None)
    slots = max(1, min(per_gpu * max(gpus, 1), len(waiting)))
    where = f"{gpus} GPU(s), {per_gpu} per GPU" if gpus else "CPUs"
    info(f"experiment {spec.name}: {len(grid)} runs, {len(grid) - len(waiting)} done, {len(waiting)} to run, "
         f"{slots} at a time on {where} -> {workspace}")
    started = time.perf_counter()
    if not jobs:
        return finish(spec, grid, waiting, workspace, workspace / "ltm.sqlite", started)
    stop = threading.Event()
    use_mps = (spec.mps if mps is None else mps) and gpus > 0 and per_gpu > 1 and slots > 1
    # A GPU worker's CPU threads: its share of the cores (12 copies of a Study-1 cell sharing an H200
    # trained 1.18x faster with one thread each than with every core's).
    threads = max(1, (os.cpu_count() or 1) // slots) if gpus else None
    places = [(str(i % gpus) if gpus > 1 else None, _cores(i, slots) if not gpus and slots > 1 else None, threads) for i in range(slots)]
    with mps_daemon(use_mps) as env, GridProgress(len(waiting)) as shown:
        workers = [Worker(*place, env) for place in places]  # importing while the GPU is checked
        if env and not reaches_gpu(env):
            for worker in workers:
                worker.close()
            env = {}
            workers = [Worker(*place, env) for place in places]
        slot_threads = [threading.Thread(target=_slot, args=(workspace, todo, shown, stop, worker, partial(Worker, *place, env)))
                        for worker, place in zip(workers, places)]
        for thread in slot_threads:
            thread.start()
        try:
            for thread in slot_threads:
                thread.join()
        except KeyboardInterrupt:  # the workers got it too; no cell starts after them, a rerun resumes theirs
            stop.set()
            for thread in slot_threads:
                thread.join()
            raise
        finally:
            for process in making:
                process.join()
    return finish(spec, grid, waiting, workspace, workspace / "ltm.sqlite", started)


def _cores(slot: int, slots: int) -> list[int]:
    """The CPU cores of worker `slot` of `slots`: a contiguous share, so their threads do not fight."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    share = cores[slot * len(cores) // slots : (slot + 1) * len(cores) // slots]
    return share or [cores[slot % len(cores)]]


class WorkerDied(RuntimeError):
    pass


class Worker:
    """One worker process (ltm.experiment.worker.serve) and the pipe that gives it cells."""

    def __init__(self, gpu: str | None, cores: list[int] | None, threads: int | None = None, env: dict[str, str] | None = None):
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no CUDA state inherited
        self.conn, theirs = spawn.Pipe()
        self.process = spawn.Process(target=serve, args=(theirs, gpu, cores, env or {}, threads), name="ltm-experiment-worker")
        self.process.start()
        theirs.close()

    def run(self, job: Job) -> str | None:
        """run_job's answer; WorkerDied when the process ends before giving one."""
        try:
            self.conn.send(job)
        except OSError:  # it died between two cells
            pass
        if self.conn in wait([self.conn, self.process.sentinel]):
            try:
                return self.conn.recv()
            except (EOFError, OSError):  # the pipe closed with the process
                pass
        self.process.join()
        raise WorkerDied(f"the worker process died (exit code {self.process.exitcode})")

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _slot(workspace: Path, todo: queue.Queue, shown: GridProgress, stop: threading.Event, worker: Worker | None,
          new_worker: Callable[[], Worker]) -> None:
    """One place in the grid: a worker that runs cells from `todo` until none is left or `stop` is
    set; `new_worker` makes its replacement when it dies or fails."""
    registry = Registry(workspace / "ltm.sqlite")  # one connection per thread
    try:
        while not stop.is_set():
            try:
                run_id, cell, job = todo.get_nowait()
            except queue.Empty:
                return
            label = f"{cell.name} seed {cell.seed}"
            registry.mark(run_id, "running")
            shown.cell_started(label)
            began = time.perf_counter()
            worker = worker or new_worker()
            try:
                problem = worker.run(job)
            except WorkerDied as died:
                problem, worker = str(died), None
                with open(job.log, "a", encoding="utf-8") as handle:
                    handle.write(f"\n{problem}\n")
            done = record(registry, run_id, job, problem)
            shown.cell_finished(label, done, time.perf_counter() - began, "" if done else f"{problem or 'no eval.json'}; log: {job.log}")
            if not done and worker is not None:  # what failed may have left the process unfit (a CUDA error stays): a fresh one
                worker.close()
                worker = None
    finally:
        if worker is not None:
            worker.close()
