"""What each scene-aware extra costs, in parameters and training FLOPs per token, at one shape.

    python bench/model_costs.py [--d-model 256 --layers 4 --vocab 2048 --seq 128]

Counts come from the model's own code (num_parameters, flops_per_token); the default shape is the
quick start's. The figures in docs/model.md are these.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

from ltm.markup import LENSES, LOOP_TOKENS, TENSION_TOKENS  # noqa: E402
from ltm.model import LtmConfig, LtmForCausalLM  # noqa: E402

EXTRAS = {
    "plain": {},
    "scene_state": {"scene_state": True},
    "channels_4": {"channels": 4, "channel_aux_weight": 0.1},
    "self_loop_core2_max4": {"loop_core_layers": 2, "loop_prelude_layers": 1, "loop_max_steps": 4},
    "scene_aux": {"scene_aux_weight": 0.1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    names = ["scene", "/scene", "header", "body", *(f"tension:{t}" for t in TENSION_TOKENS),
             *(t[2:-2] for t in LOOP_TOKENS.values()), *(f"lens:{lens}" for lens in LENSES)]
    ids = {name: args.vocab - 1 - i for i, name in enumerate(names)}
    base = None
    for name, extra in EXTRAS.items():
        model = LtmForCausalLM(LtmConfig(vocab_size=args.vocab, hidden_size=args.d_model, num_hidden_layers=args.layers,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=args.seq,
                                         scene_token_ids=ids, **extra))
        params, flops = model.num_parameters(), model.flops_per_token(args.seq)
        base = base or (params, flops)
        shape = f"d{args.d_model}-L{args.layers}-V{args.vocab}-T{args.seq}"
        emit("model_costs", f"{name}_parameters", params, "parameters", shape=shape, relative=round(params / base[0], 4))
        emit("model_costs", f"{name}_flops_per_token", flops, "FLOPs", shape=shape, relative=round(flops / base[1], 4))


if __name__ == "__main__":
    main()
