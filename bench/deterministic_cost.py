"""What deterministic kernels cost a small eager model's training on one GPU, side by side in one
process: the study-1 preset of train_throughput.py (a Study-1 cell's model) without them, with them
as ltm uses them (torch's strict mode, its NaN fill of new tensors off), and with the fill left on
(torch's default in strict mode), each variant --repeats times, interleaved, so drift in the
machine's speed falls on all three alike.

    PYTHONPATH=src python bench/deterministic_cost.py [--repeats 2]

Prints tokens/s per variant (the median of its repeats) and the ratio of each to the fastest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, quiet_transformers  # noqa: E402
from train_throughput import PRESETS, measure_ltm  # noqa: E402

import ltm.train.loop as loop  # noqa: E402
from ltm.config import SpeedConfig  # noqa: E402
from ltm.train import distributed  # noqa: E402

BENCH = "deterministic_cost"
ours = loop._deterministic


@contextmanager
def with_fill(speed):
    """ltm's deterministic block with torch's NaN fill of every new tensor left on."""
    with ours(speed):
        torch.utils.deterministic.fill_uninitialized_memory = True
        yield


VARIANTS = {"nondeterministic": (False, ours), "deterministic": (True, ours), "deterministic_with_fill": (True, with_fill)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="study-1")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    quiet_transformers()
    p = PRESETS[args.preset] | {"accumulation": 1}
    world = distributed.setup("auto")
    speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, (deterministic, block) in VARIANTS.items():
            loop._deterministic = block
            speed = SpeedConfig(compile=False, deterministic=deterministic)
            speeds[name].append(measure_ltm(p, world, p["steps"], p["skip"], speed)["tokens_per_s"])
    loop._deterministic = ours
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    fastest = max(medians.values())
    shape = f"{args.preset}, eager, speed auto otherwise"
    for name, value in medians.items():
        emit(BENCH, f"tokens_per_s_{name}", value, "tokens/s", shape=shape, repeats=speeds[name])
        emit(BENCH, f"slowdown_{name}", fastest / value, "x", shape=shape)


if __name__ == "__main__":
    main()
