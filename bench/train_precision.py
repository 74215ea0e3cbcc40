"""What the precision options cost in quality: the GPT-2-124M-shaped model of train_throughput.py,
trained from the same initial weights on the same real text in the same order, once per variant
(a train.speed section: `exact`, the reference numerics; each precision switch on top of it; and
`auto`, what a user gets), and its held-out loss at the end. `exact` runs twice: the gap between
its two runs is the run-to-run noise (GPU kernels are not bitwise deterministic) that a variant's
difference has to be read against; another --seed shows the spread between initial weights.

    python bench/train_precision.py --dataset DATASET_DIR [--steps 400]

DATASET_DIR is a built ltm dataset (bench/configs/precision-data.yaml says how the committed figures'
one was made from ../shared/corpora). Needs a GPU: on the CPU there is no autocast to vary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, quiet_transformers  # noqa: E402

from ltm.dataset.reader import load_manifest, load_split  # noqa: E402
from ltm.dataset.tokenizer import load_tokenizer  # noqa: E402
from ltm.config import TrainConfig  # noqa: E402
from ltm.model import LtmConfig, LtmForCausalLM  # noqa: E402
from ltm.train import distributed  # noqa: E402
from ltm.train.data import ShardBatches, loss_windows  # noqa: E402
from ltm.train.loop import fit, prepare  # noqa: E402

# train.speed sections; "exact" is the reference numerics, its repeat the noise of one more run.
VARIANTS = {
    "exact": {"mode": "exact"},
    "exact (repeat)": {"mode": "exact"},
    "bf16 residual": {"mode": "exact", "residual_dtype": "bf16"},
    "bf16 residual + FP8 head": {"mode": "exact", "residual_dtype": "bf16", "fp8_head": True},
    "bf16 residual + FP8 head + FP8 body": {"mode": "exact", "residual_dtype": "bf16", "fp8_head": True, "fp8_body": True},
    "auto": {"mode": "auto", "tune_kernels": False},  # what a user gets (the FP8 weight gradients too on an FP8 GPU)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32, help="sequences of 1024 tokens per step")
    parser.add_argument("--seed", type=int, default=0, help="the initial weights' seed (another seed shows the spread "
                        "that any small change of the numbers causes)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), metavar="NAME",
                        help=f"which of: {', '.join(map(repr, VARIANTS))} (the first is the baseline)")
    args = parser.parse_args()
    quiet_transformers()
    world = distributed.setup("auto")
    if world.device.type != "cuda":
        sys.exit("train_precision.py needs a GPU: the options it compares act under bf16 autocast")
    manifest = load_manifest(args.dataset)
    vocab = len(load_tokenizer(args.dataset / manifest.tokenizer))
    seq = 1024
    train_tokens, heldout = load_split(args.dataset, manifest, "train"), load_split(args.dataset, manifest, "heldout")
    batches = ShardBatches(train_tokens, seq, args.batch, args.batch, 0, 1)
    windows = loss_windows(heldout, seq, 256)
    shape = f"gpt2-124m shape, seed {args.seed}, vocabulary {vocab}, {args.steps} steps x {args.batch} x {seq} tokens, compiled, adamw"
    results = {}
    for name in args.variants:
        options = VARIANTS[name]
        torch.manual_seed(args.seed)
        model = LtmForCausalLM(LtmConfig(vocab_size=vocab, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                         num_key_value_heads=12, max_position_embeddings=seq, tie_word_embeddings=True))
        tc = TrainConfig(steps=args.steps, batch_size=args.batch, lr=6e-4, warmup_steps=args.steps // 10, eval_every=args.steps // 4,
                         logger="none", speed=options)
        with tempfile.TemporaryDirectory() as out:
            run = prepare(model, None, tc, batches, windows, Path(out), world)
            fit(run)
            records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        results[name] = records[-1]["heldout_loss"]
        curve = [(r["step"], r["heldout_loss"]) for r in records if "heldout_loss" in r]
        emit("train_precision", "heldout_loss", results[name], "nats/token", shape=f"{shape}, {name}: {run.speed.describe()}", curve=curve,
             train_loss=records[-1]["loss"], tokens_per_s=records[-1]["tokens_per_s"], epochs=batches.epochs(args.steps))
        torch._dynamo.reset()
    baseline = args.variants[0]
    for name, loss in results.items():
        if name != baseline:
            emit("train_precision", "heldout_loss_delta", loss - results[baseline], "nats/token", shape=f"{shape}, {name} - {baseline}")
    distributed.teardown(world)


if __name__ == "__main__":
    main()
