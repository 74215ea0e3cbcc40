"""What each scene-aware part costs in training speed (Study 4, docs/studies/scene-parts.md): every
arm of an experiment file over arms (experiments/scene-parts.yaml) trained alone for a few steps on
random tokens at the study's shape, batch and speed settings, through ltm's own loop (fit), with its
parameters, training FLOPs per token (the model's own count) and tokens/s relative to the first arm,
which is trained once untimed before the others and measured once more at the end (FIRST_again):
how far the same model's speed moves within the command.

    python bench/scene_parts_throughput.py [--experiment experiments/scene-parts.yaml] [--steps 30 --skip 10]

Random tokens: the marker tokens the parts read then occur at random, which changes what the parts
compute, not how much (the losses and states are masked means, the same work for any tokens).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, quiet_transformers  # noqa: E402
from train_throughput import measure_ltm  # noqa: E402

from ltm.config import ModelConfig, SpeedConfig  # noqa: E402
from ltm.experiment.spec import merge  # noqa: E402
from ltm.markup import LENSES, LOOP_TOKENS, TENSION_TOKENS  # noqa: E402
from ltm.model import LtmConfig  # noqa: E402
from ltm.train import distributed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def marker_ids(vocab: int) -> dict[str, int]:
    """Marker token ids at the top of a random-token vocabulary (the parts need their ids, not a tokenizer)."""
    names = ["scene", "/scene", "header", "body", *(f"tension:{t}" for t in TENSION_TOKENS),
             *(t[2:-2] for t in LOOP_TOKENS.values()), *(f"lens:{lens}" for lens in LENSES)]
    return {name: vocab - 1 - i for i, name in enumerate(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, default=ROOT / "experiments" / "scene-parts.yaml")
    parser.add_argument("--axis", default="arm", help="the experiment's axis whose values are the arms")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=10, help="steps left out of the timing (warm-up)")
    args = parser.parse_args()
    quiet_transformers()
    spec = yaml.safe_load(args.experiment.read_text(encoding="utf-8"))
    base = yaml.safe_load((args.experiment.parent / spec["base"]).read_text(encoding="utf-8"))
    train, vocab = base.get("train", {}), base.get("build", {}).get("vocab_size", 4096)
    speed = SpeedConfig.model_validate(train.get("speed", {}))
    world = distributed.setup("auto")
    first = None
    arms = list(spec["axes"][args.axis].items())
    # The first arm once untimed (the process's first training pays for setting the device up), and
    # once more at the end: how far the same model's speed moves within the command.
    for n, (arm, overrides) in enumerate([arms[0], *arms, (f"{arms[0][0]}_again", arms[0][1])]):
        model = ModelConfig.model_validate(merge(base.get("model", {}), overrides.get("model", {})))
        p = {"vocab": vocab, "seq": model.max_seq_len, "micro": train.get("batch_size", 16), "accumulation": 1}
        result = measure_ltm(p, world, args.steps, args.skip, speed, config=LtmConfig.from_run(model, vocab, marker_ids(vocab)))
        if n == 0:
            continue
        first = first or result
        shape = (f"{spec['name']} {arm}: d{model.d_model} L{model.n_layers} V{vocab} T{model.max_seq_len}, batch {p['micro']}, "
                 f"{result['speed']}, {args.steps - args.skip} timed steps")
        emit("scene_parts_throughput", f"{arm}_tokens_per_s", result["tokens_per_s"], "tokens/s", shape=shape,
             relative=round(result["tokens_per_s"] / first["tokens_per_s"], 4), parameters=result["parameters"],
             flops_per_token=result["flops_per_token"], flops_relative=round(result["flops_per_token"] / first["flops_per_token"], 4))
    distributed.teardown(world)


if __name__ == "__main__":
    main()
