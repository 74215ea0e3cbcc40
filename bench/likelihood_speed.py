"""Speed of the one batched log-likelihood scorer (ltm.eval.likelihood) on QA-shaped pairs: a
Study-2 fact set asks 2,000 questions in two forms with four options each, 16,000 pairs of a
~20-token context and a ~5-token continuation, scored by a 20.8M-parameter model (Study 2's shape;
target: under 10 s on a GPU). On a CPU, `--pairs 2000 --small` keeps it to a minute.

    python bench/likelihood_speed.py [--pairs 16000] [--batch 64] [--small]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

from ltm.eval.likelihood import continuation_logprobs  # noqa: E402
from ltm.model import LtmConfig, LtmForCausalLM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--small", action="store_true", help="a 1.6M-parameter model (d 128, 4 layers) instead of Study 2's")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    width, layers, heads = (128, 4, 4) if args.small else (384, 10, 6)
    model = LtmForCausalLM(LtmConfig(vocab_size=8192, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                                     num_key_value_heads=heads, max_position_embeddings=512)).to(device).eval()
    rng = np.random.default_rng(0)
    contexts = [rng.integers(1, 8192, rng.integers(12, 30)).tolist() for _ in range(args.pairs)]
    continuations = [rng.integers(1, 8192, rng.integers(2, 9)).tolist() for _ in range(args.pairs)]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        continuation_logprobs(model, contexts[: args.batch], continuations[: args.batch], args.batch)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        continuation_logprobs(model, contexts, continuations, args.batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    shape = (f"{model.num_parameters() / 1e6:.1f}M parameters, batch {args.batch}, "
             + ("bf16 autocast on GPU" if device.type == "cuda" else f"fp32 on CPU, {torch.get_num_threads()} threads"))
    emit("likelihood_speed", "seconds_for_pairs", seconds, "s", target=10 if args.pairs == 16_000 and device.type == "cuda" else None,
         pairs=args.pairs, shape=shape)
    emit("likelihood_speed", "pairs_per_s", args.pairs / seconds, "pairs/s", shape=shape)


if __name__ == "__main__":
    main()
