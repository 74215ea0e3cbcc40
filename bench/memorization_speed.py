"""Memorization measurement speed: greedy 32-token continuations of 32-token prefixes, batched
with the KV cache (ltm.eval.sample.continuations: as many rows as fit its cache budget), for 10,000
sequences of a 30M-parameter model (target: under a minute on a GPU).

    python bench/memorization_speed.py [--sequences 10000]
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

from ltm.eval.memorization import extraction  # noqa: E402
from ltm.model import LtmConfig, LtmForCausalLM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=10_000)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = LtmForCausalLM(LtmConfig(vocab_size=8192, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                                     num_key_value_heads=8, max_position_embeddings=128)).to(device).eval()
    sequences = np.random.default_rng(0).integers(0, 8192, size=(args.sequences, 64))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        extraction(model, sequences[:64])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        exact, _ = extraction(model, sequences)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    shape = f"{model.num_parameters() / 1e6:.1f}M parameters, " + ("bf16 on GPU" if device.type == "cuda" else "fp32 on CPU")
    emit("memorization_speed", "seconds_for_sequences", seconds, "s", target=60 if args.sequences == 10_000 else None,
         sequences=int(len(exact)), shape=shape)
    emit("memorization_speed", "sequences_per_s", len(exact) / seconds, "sequences/s", shape=shape)


if __name__ == "__main__":
    main()
