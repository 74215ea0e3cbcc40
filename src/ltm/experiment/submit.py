"""`ltm experiment EXP.yaml --submit slurm`: the grid's cells as cluster jobs, through submitit
(extra `scale`), one job per cell (a Slurm job array), each running `ltm run` as a worker would.

Only this process, on the machine that submits, writes the SQLite registry: jobs write their run
folders (on storage the nodes share: the workspace) and this process records each cell as its
job ends. SQLite's locking is unreliable on network file systems (NFS, Lustre, GPFS), so the
registry must lie on a local disk: `--registry` puts it elsewhere when the workspace is shared.
`--submit local` runs the same jobs as local processes (submitit's local executor): for a try-out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ltm.experiment.registry import Registry
from ltm.experiment.runner import finish, job_for, pending, record, workspace_of
from ltm.experiment.spec import cells, load_spec
from ltm.experiment.worker import run_job
from ltm.log import info

# File systems on which SQLite's locks cannot be trusted (the `type` column of /proc/mounts).
NETWORK_FILE_SYSTEMS = {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "beegfs", "ceph", "fuse.sshfs", "9p"}


@dataclass
class SubmitOptions:
    partition: str | None = None
    timeout_min: int = 24 * 60  # per cell
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    parallel: int | None = None  # jobs of the array running at once (Slurm's %N); None: as many as Slurm allows
    registry: Path | None = None  # default WORKSPACE/ltm.sqlite
    poll_s: float = 30.0  # longest wait between looks at the jobs


def file_system(path: Path) -> str:
    """The type of the file system `path` lies on, from /proc/mounts (longest mount point that contains it)."""
    path, best, kind = path.resolve(), -1, "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and (path == Path(fields[1]) or Path(fields[1]) in path.parents) and len(fields[1]) > best:
            best, kind = len(fields[1]), fields[2]
    return kind


def submit_experiment(path: Path, cluster: str, options: SubmitOptions | None = None) -> Path:
    """Submit every cell not done yet as a job on `cluster` (slurm, or local), wait for them, record
    each in the registry and write the report; return the workspace."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--submit needs submitit: pip install 'ltm[scale]'") from None
    options = options or SubmitOptions()
    spec, folder = load_spec(path)
    grid = cells(spec, folder)
    workspace = workspace_of(spec, folder)
    registry_path = options.registry or workspace / "ltm.sqlite"
    registry_path.parent.mkdir(parents=True, exist_ok=True)
    if (kind := file_system(registry_path.parent)) in NETWORK_FILE_SYSTEMS:
        raise ValueError(f"{registry_path} is on {kind}, where SQLite's locks are unreliable: give --registry a path on a local disk")
    registry = Registry(registry_path)
    waiting = pending(spec, grid, workspace, registry)
    executor = submitit.AutoExecutor(folder=workspace / "logs" / "submitit", cluster=cluster)
    parameters = {"name": f"ltm-{spec.name}", "timeout_min": options.timeout_min, "cpus_per_task": options.cpus_per_job,
                  "gpus_per_node": options.gpus_per_job}
    if cluster == "slurm":
        parameters |= {"slurm_partition": options.partition} if options.partition else {}
        parameters |= {"slurm_array_parallelism": options.parallel} if options.parallel else {}
    executor.update_parameters(**parameters)
    jobs = [job_for(cell, run_dir, workspace) for _, cell, run_dir in waiting]
    started = time.perf_counter()
    submitted = executor.map_array(run_job, jobs) if jobs else []
    for (run_id, _, _), job in zip(waiting, submitted):
        registry.mark(run_id, "running")
    info(f"experiment {spec.name}: {len(grid)} runs, {len(grid) - len(waiting)} done, {len(waiting)} submitted to {cluster} "
         f"(job {submitted[0].job_id.split('_')[0] if submitted else '-'}); registry {registry_path}")
    pause = 1.0  # polls often at first (short jobs, a try-out), then every poll_s
    left = [(run_id, cell, job, handle) for (run_id, cell, _), job, handle in zip(waiting, jobs, submitted)]
    while left:
        ended = [item for item in left if item[3].done()]
        left = [item for item in left if item not in ended]
        for run_id, cell, job, handle in ended:
            try:
                problem = handle.result()
            except Exception as exc:  # noqa: BLE001 — the job died (time limit, node failure): the cell failed, the rest go on
                problem = f"job {handle.job_id}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
            done = record(registry, run_id, job, problem)
            info(f"{cell.name} seed {cell.seed}: {'done' if done else 'failed: ' + (problem or 'no eval.json')}")
        if left:
            time.sleep(pause)
            pause = min(2 * pause, options.poll_s)
    return finish(spec, grid, waiting, workspace, registry_path, started)

