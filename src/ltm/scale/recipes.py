"""Files -> documents -> scenes on datatrove executors: the same stages on one machine (local, the
default) and on a cluster (Slurm, Ray). Every stage writes JSONL shards, one per task, under OUT:

    OUT/documents/NNNNN.jsonl   ltm.document, as read (mojibake repaired, Gutenberg stripped)
    OUT/minhash/...             datatrove's MinHash signatures (taken as the documents are read),
                                buckets and the ids to remove
    OUT/unique/NNNNN.jsonl      ltm.document, duplicates removed
    OUT/scenes/NNNNN.jsonl      ltm.scene: what `ltm build` reads (a glob of shards)
    OUT/logs/STAGE/             datatrove's logs, stats and one completion marker per task

A task that finished is not run again: rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ltm.config import ScenesConfig

Dedup = Literal["minhash", "task", "none"]
Executor = Literal["local", "slurm", "ray"]


@dataclass
class Cluster:
    """What a Slurm or Ray executor needs beyond the stages (datatrove's own arguments)."""

    partition: str = "cpu"
    time: str = "12:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2
    venv_path: str | None = None  # activated by every Slurm job
    sbatch_args: dict = field(default_factory=dict)


def stages(inputs: str | Path, out: str | Path, tasks: int, scenes: ScenesConfig | None = None, dedup: Dedup = "minhash",
           glob: str | None = None, tags: dict | None = None, seed: int = 0) -> list[tuple[str, list, int]]:
    """(name, steps, tasks) of each stage in order; each stage reads what the one before wrote.
    `dedup`: datatrove's MinHash across all tasks; "task": ltm's MinHash within each task (one
    task holds its documents' signatures); "none"."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
    from datatrove.pipeline.readers import JsonlReader

    from ltm.scale.steps import LtmFileReader, LtmMinhashSignature, LtmWriter, NearDuplicateFilter, SceneCutter

    out = Path(out)
    cut = [SceneCutter(scenes, seed), LtmWriter(str(out / "scenes"), kind="scene")]
    read = LtmFileReader(str(inputs), glob_pattern=glob, tags=tags)
    if dedup != "minhash":
        dedupe = [NearDuplicateFilter()] if dedup == "task" else []
        return [("scenes", [read, *dedupe, LtmWriter(str(out / "unique")), *cut], tasks)]
    # 14 bands of 8 hashes (datatrove's default) over ltm's shingles (LtmMinhashSignature).
    config = MinhashConfig()
    minhash = out / "minhash"
    documents = str(out / "documents")
    # Signatures are taken as the documents are written (the writer passes them on, in the order of the
    # shard the filter reads back): no second stage that parses every document again.
    return [
        ("read", [read, LtmWriter(documents), LtmMinhashSignature(str(minhash / "signatures"), config)], tasks),
        ("buckets", [MinhashDedupBuckets(str(minhash / "signatures"), str(minhash / "buckets"), config=config)], config.num_buckets),
        ("clusters", [MinhashDedupCluster(str(minhash / "buckets"), str(minhash / "remove"), config=config)], 1),
        ("scenes", [JsonlReader(documents, compression=None),
                    MinhashDedupFilter(str(minhash / "remove"), exclusion_writer=LtmWriter(str(out / "duplicates"))),
                    LtmWriter(str(out / "unique")), *cut], tasks),
    ]


def local_cores() -> int:
    """Tasks at once on this machine by default: one per core it may use (more only share the cores,
    and the CPU time each one spends grows with the switching)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def executors(named_stages: list[tuple[str, list, int]], out: str | Path, executor: Executor = "local", workers: int = -1,
              cluster: Cluster | None = None) -> list:
    """One datatrove executor per stage, each depending on the one before; run the last one."""
    out, cluster, made = Path(out), cluster or Cluster(), []
    for name, steps, tasks in named_stages:
        common = {"pipeline": steps, "tasks": tasks, "logging_dir": str(out / "logs" / name), "depends": made[-1] if made else None}
        if executor == "local":
            from datatrove.executor import LocalPipelineExecutor

            made.append(LocalPipelineExecutor(**common, workers=min(workers if workers > 0 else local_cores(), tasks)))
        elif executor == "slurm":
            from datatrove.executor import SlurmPipelineExecutor

            made.append(SlurmPipelineExecutor(**common, job_name=f"ltm-{name}", partition=cluster.partition, time=cluster.time,
                                              cpus_per_task=cluster.cpus_per_task, mem_per_cpu_gb=cluster.mem_per_cpu_gb,
                                              venv_path=cluster.venv_path, sbatch_args=cluster.sbatch_args,
                                              slurm_logs_folder=str(out / "logs" / name / "slurm")))
        elif executor == "ray":
            from datatrove.executor import RayPipelineExecutor

            made.append(RayPipelineExecutor(**common, workers=workers, cpus_per_task=cluster.cpus_per_task,
                                            mem_per_cpu_gb=cluster.mem_per_cpu_gb))
        else:
            raise ValueError(f"executor {executor!r}: local, slurm or ray")
    return made


def run(inputs: str | Path, out: str | Path, tasks: int = 1, workers: int = -1, scenes: ScenesConfig | None = None,
        dedup: Dedup = "minhash", executor: Executor = "local", cluster: Cluster | None = None, **options) -> Path:
    """Run (local) or submit (Slurm, Ray) every stage; return the folder of scene shards."""
    chain = executors(stages(inputs, out, tasks, scenes, dedup, **options), out, executor, workers, cluster)
    chain[-1].run()
    return Path(out) / "scenes"
