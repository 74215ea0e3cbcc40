"""NVIDIA's Multi-Process Service for an experiment's workers. Without it, processes that share a
GPU take turns on it, one process's kernels at a time; a small model's kernels leave most of the GPU
idle during its turn. With it, their kernels run side by side.

`ltm experiment` starts a control daemon of its own when more than one worker shares a GPU and
`nvidia-cuda-mps-control` is on PATH: its pipe and log folders are private (a temporary folder), so
only the experiment's workers, which get CUDA_MPS_PIPE_DIRECTORY, become its clients; other
processes on the GPU are left as they were. A CUDA process is started once through it while the
workers start, before any cell runs; if that fails (a container without the IPC MPS needs, a GPU in
exclusive mode owned by someone else) the workers are started again without it. When the user already runs a
daemon (CUDA_MPS_PIPE_DIRECTORY set), the workers use that one and nothing is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ltm.log import info, warn

CONTROL = "nvidia-cuda-mps-control"
# A CUDA context through the daemon: what a worker's first cell does, checked before any cell runs.
PROBE = "import torch; torch.ones(1, device='cuda').sum().item()"
PROBE_TIMEOUT_S = 180


@contextmanager
def mps_daemon(wanted: bool) -> Iterator[dict[str, str]]:
    """The environment the workers need to be clients of a private daemon running for the block ({}
    when none was started: not wanted, no control program, or the user's own daemon, which the
    workers inherit). Whether the GPU can be reached through it is `reaches_gpu`'s question, asked
    while the workers start."""
    control = shutil.which(CONTROL)
    if not wanted or control is None:
        yield {}
        return
    if os.environ.get("CUDA_MPS_PIPE_DIRECTORY"):  # the user's own daemon: the workers inherit it
        info(f"MPS: the workers use the daemon at {os.environ['CUDA_MPS_PIPE_DIRECTORY']}")
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="ltm-mps-"))  # short: the daemon's socket path has a length limit
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}
    for path in env.values():
        Path(path).mkdir()
    started = _control(control, ["-d"], env)
    try:
        yield env if started is not None else {}
    finally:
        if started is not None:
            _control(control, [], env, stdin="quit\n")
        shutil.rmtree(folder, ignore_errors=True)


def reaches_gpu(env: dict[str, str], probe: list[str] | None = None) -> bool:
    """Whether `probe` (default: PROBE in this Python) reaches the GPU through the daemon of `env`;
    says which way the workers will run."""
    problem = _probe(probe or [sys.executable, "-c", PROBE], env)
    if problem:
        warn(f"MPS: a CUDA process could not start through the daemon ({problem}); the workers take turns on the GPU without it")
        return False
    info(f"MPS: the workers' kernels share the GPU through a daemon of their own ({Path(env['CUDA_MPS_PIPE_DIRECTORY']).parent})")
    return True


def _control(control: str, args: list[str], env: dict[str, str], stdin: str | None = None) -> str | None:
    """Run the control program; its output, or None (with a warning) when it failed."""
    try:
        done = subprocess.run([control, *args], env={**os.environ, **env}, input=stdin, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        warn(f"MPS: {CONTROL} {' '.join(args)} failed: {exc}")
        return None
    if done.returncode != 0:
        warn(f"MPS: {CONTROL} {' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
        return None
    return done.stdout


def _probe(command: list[str], env: dict[str, str]) -> str | None:
    """None when `command` ran through the daemon, else what went wrong."""
    try:
        done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no answer in {PROBE_TIMEOUT_S} s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit {done.returncode}"
    return None
