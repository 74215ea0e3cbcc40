"""Where training metrics go besides OUT/metrics.jsonl (which is always written): TensorBoard (the
default), trackio or Weights & Biases (optional extras: `pip install ltm[trackio]` / `ltm[wandb]`),
or nowhere. Each works offline: TensorBoard writes event files, trackio a local database
(`trackio show` opens it), wandb runs in offline mode unless WANDB_MODE says otherwise (sync later
with `wandb sync`)."""

from __future__ import annotations

import os
from pathlib import Path

from ltm.log import warn


class MetricLogger:
    """Scalars by step, to one of the backends; a backend that is not installed becomes a warning."""

    def __init__(self, kind: str, out_dir: Path, run_name: str, config: dict):
        self.kind, self._sink = kind, None
        if kind == "none":
            return
        try:
            if kind == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self._sink = SummaryWriter(str(out_dir / "tensorboard"))
            elif kind == "trackio":
                import trackio

                self._sink = trackio.init(project="ltm", name=run_name, config=config)
            else:
                import wandb

                os.environ.setdefault("WANDB_MODE", "offline")
                self._sink = wandb.init(project="ltm", name=run_name, config=config, dir=str(out_dir))
        except ImportError:
            extra = {"tensorboard": "tensorboard", "trackio": "ltm[trackio]", "wandb": "ltm[wandb]"}[kind]
            warn(f"train.logger is {kind}, which is not installed: metrics go to metrics.jsonl only (pip install {extra})")

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self._sink is None:
            return
        if self.kind == "tensorboard":
            for key, value in scalars.items():
                self._sink.add_scalar(f"train/{key}", value, step)
        else:
            self._sink.log({f"train/{key}": value for key, value in scalars.items()}, step=step)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close() if self.kind == "tensorboard" else self._sink.finish()
