"""A worker process of `ltm experiment`: it runs cells one after another (`ltm run CONFIG --run-dir
RUN --resume --shared DIR`, in process), each cell's output going to its log file.

A worker pays Python's start, the imports of torch and transformers and the GPU's context once for
all the cells it runs, not once per cell. Between cells it drops what a cell left behind (compiled
graphs, cached GPU memory), so a cell computes what it would in a fresh process. A cell that raises
is reported and the worker takes the next; a worker that dies (killed, out of memory) is replaced by
the scheduler (ltm.experiment.runner).
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path


@dataclass
class Job:
    config: Path  # the cell's run config
    run_dir: Path
    shared: Path  # the experiment's cache of data stages
    log: Path


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (the file descriptors, so the processes a stage starts
    too) to the end of LOG for the time of the block."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", encoding="utf-8") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def run_job(job: Job) -> str | None:
    """Run one cell; None when it finished, else the error (its traceback is in the log too)."""
    from ltm import stages

    with output_to(job.log):
        try:
            stages.run(job.config, job.run_dir, resume=True, shared=job.shared)
            return None
        except Exception as exc:  # noqa: BLE001 — a failed cell is recorded; the worker goes on with the next
            from ltm.log import error

            if not isinstance(exc, ValueError | FileNotFoundError):  # ltm's refusals say what to change; the rest are bugs
                traceback.print_exc()
            error(str(exc))  # the log's last line, as `ltm run` would print it
            return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        finally:
            _forget()


def _forget() -> None:
    """What a cell leaves in the process and the next must not see: compiled graphs (torch.compile
    would otherwise recompile for each new model until it gives up and runs eagerly) and cached
    GPU memory (the other workers' to use)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def serve(conn: Connection, gpu: str | None, cores: list[int] | None, env: dict[str, str] | None = None,
          threads: int | None = None) -> None:
    """The worker's main loop (the target of its process): take a Job, send back run_job's answer,
    until None arrives. `gpu` is the GPU it uses (CUDA_VISIBLE_DEVICES), `cores` the CPU cores it is
    held to, `threads` the CPU threads it may use without being held (a GPU worker's share of the
    cores), `env` what else its environment needs before CUDA starts (the MPS daemon's pipe)."""
    os.environ.update(env or {})
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
        threads = len(cores)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported: its pools follow
    _import_stages()
    while (job := conn.recv()) is not None:
        conn.send(run_job(job))


def _import_stages() -> None:
    """What every cell imports (torch, transformers, the training and eval stages: seconds), imported
    while the worker waits for its first cell, as the GPU is checked and the data stages are made."""
    import ltm.eval.evaluate  # noqa: F401
    import ltm.stages  # noqa: F401
    import ltm.train.pretrain  # noqa: F401
