"""Study 4's probes of a trained run (docs/studies/scene-parts.md), beside what `ltm eval` measured:
a self-looped model evaluated at several numbers of loop steps (ltm.eval.think) and, for a model
with channels, its gates read out per lens (ltm.eval.gates). Writes RUN/parts.json; a run with
neither part gets none.

    python experiments/scene_parts_probe.py RUN [RUN ...] [--steps 1 2 4 8] [--windows 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from pydantic import BaseModel

from ltm.config import load_config
from ltm.dataset.reader import load_manifest, load_segments, open_split
from ltm.eval.gates import GateReadout, gate_readout
from ltm.eval.think import ThinkPoint, think_curve
from ltm.io import write_json
from ltm.log import info
from ltm.model.factory import load_model, pick_device
from ltm.model.numerics import bf16_autocast
from ltm.stages import CONFIG, DATASET, QA, final_checkpoint

PARTS = "parts.json"


class Parts(BaseModel):
    think: list[ThinkPoint] | None = None
    gates: GateReadout | None = None


def probe(run: Path, steps: list[int], windows: int) -> Parts | None:
    config = load_config(run / CONFIG)
    checkpoint, dataset = final_checkpoint(run), run / DATASET
    parts = Parts()
    if config.model.loop_core_layers:
        qa = run / QA
        parts.think = think_curve(config, dataset, checkpoint, qa if qa.exists() else None, steps)
    if config.model.channels > 1:
        device = pick_device(config.eval.device)
        model = load_model(checkpoint).to(device)
        # In the numerics `ltm eval` uses: bf16 autocast on a GPU unless train.speed.precision says fp32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast(config.train.speed.precision, device)):
            parts.gates = gate_readout(model, open_split(dataset, load_manifest(dataset), "train"), load_segments(dataset, "train"),
                                       windows_per_lens=windows, seed=config.seed)
    return parts if parts.think or parts.gates else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="loop steps at inference")
    parser.add_argument("--windows", type=int, default=16, help="context windows per lens for the gate readout")
    args = parser.parse_args()
    from transformers.utils import logging

    logging.disable_progress_bar()  # no bar per checkpoint load in the device log
    for run in args.runs:
        parts = probe(run, args.steps, args.windows)
        if parts is not None:
            write_json(run / PARTS, parts)
            info(f"{run.name}: {', '.join(k for k in ('think', 'gates') if getattr(parts, k))} -> {run / PARTS}")


if __name__ == "__main__":
    main()
