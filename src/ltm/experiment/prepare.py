"""The data stages of a grid, made before its cells ask for them: one process per distinct build
(at most one per core) runs ingest, scenes, the tokenizer and the build into the experiment's cache
folder (ltm.stages.make_shared_data), while the workers start and the GPU is checked. A cell that
needs a stage still being made waits on its lock (ltm.experiment.shared), then finds it made.

A stage that fails here only logs (WORKSPACE/logs/data-KEY.log): the cell that needs it makes it
again in its own run and fails there, with its own log and record.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path

from ltm.config import load_config
from ltm.experiment.shared import data_keys
from ltm.experiment.worker import Job, output_to


def distinct_builds(jobs: list[Job]) -> dict[str, Job]:
    """One job per distinct build key (the first that has it), keyed by it."""
    from ltm.stages import absolute

    builds: dict[str, Job] = {}
    for job in jobs:
        builds.setdefault(data_keys(absolute(load_config(job.config)))["build"], job)
    return builds


def make(job: Job, log: Path) -> None:
    """A process's target: the data stages of JOB's config into its cache folder, output to LOG."""
    with output_to(log):
        try:
            from ltm.stages import absolute, make_shared_data

            make_shared_data(absolute(load_config(job.config)), job.shared)
        except Exception:  # noqa: BLE001 — the cell that needs the stage makes it again and reports it
            traceback.print_exc()


def start(jobs: list[Job], logs: Path) -> list[multiprocessing.Process]:
    """Processes making the data stages of JOBS' distinct builds, started; join them when done."""
    spawn = multiprocessing.get_context("spawn")
    builds = list(distinct_builds(jobs).items())[: os.cpu_count() or 1]
    processes = [spawn.Process(target=make, args=(job, logs / f"data-{key}.log"), name="ltm-experiment-data") for key, job in builds]
    for process in processes:
        process.start()
    return processes
