"""Shared by the bench scripts: where the real corpora are, what machine this is, one JSON line per figure."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# LTM_SHARED_CORPORA points elsewhere, e.g. from a git worktree that has no ../shared beside it.
SHARED_CORPORA = Path(os.environ.get("LTM_SHARED_CORPORA") or ROOT.parent / "shared" / "corpora")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never download anything


def quiet_transformers() -> None:
    """No per-file progress bars from save_pretrained in benchmark output."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def machine() -> str:
    """A short description: CPU model and core count, plus the GPU when torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    description = f"{cpu}, {os.cpu_count()} cores"
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            description = f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, " + description
    return description


def need_corpora() -> Path:
    if not SHARED_CORPORA.is_dir():
        sys.exit(f"skipped: {SHARED_CORPORA} not present (the benchmarks read the real corpora from there)")
    return SHARED_CORPORA


def emit(bench: str, metric: str, value: float, unit: str, target: float | None = None, **extra) -> dict:
    record = {"bench": bench, "metric": metric, "value": round(value, 4), "unit": unit, "target": target, "machine": machine(), **extra}
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return record
