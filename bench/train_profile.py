"""Where a training step's GPU time goes: ltm's own loop (train/loop.py: fit) at the GPT-2-124M
shape of bench/train_throughput.py, under torch.profiler, kernels grouped by what they do.

    python bench/train_profile.py [--micro 32] [--speed auto|fast|exact] [--residual fp32|bf16] [--[no-]fp8-head]
                                  [--[no-]fp8-body] [--[no-]fp8-weight-grad] [--[no-]tune-kernels] [--compile-mode default] [--top 15]

Prints one JSON line per group: milliseconds of GPU time per step and its share of the step's wall
time, the step time, the share of it with no kernel running, and the `--top` kernels that take longest.
The profiler records `--active` steps after `--skip` (compilation and warm-up left out). Kernel
names decide the group, so the grouping is a reading aid, not an exact science.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, schedule

from common import emit, quiet_transformers
from train_throughput import COMPILE_MODES, PRESETS

from ltm.config import SpeedConfig, TrainConfig
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.train import distributed
from ltm.train.data import ShardBatches, loss_windows
from ltm.train.loop import fit, prepare

GROUPS = [  # first match wins; inductor's kernels are named after the ops they fuse, whatever those are
    ("attention", r"flash|fmha|attention|sdpa|cudnn"),
    ("loss", r"cross_entropy|log_softmax|logsumexp|nll"),
    ("fused elementwise (inductor)", r"^triton_"),
    ("matmul", r"gemm|sm90_xmma|cutlass|nvjet|wgmma|_mm_|matmul"),
    ("optimizer", r"adam|multi_tensor|foreach|norm_kernel|reduce_kernel"),
    ("copies", r"copy|memcpy|memset|fill|cat"),
]


def group(name: str) -> str:
    return next((g for g, pattern in GROUPS if re.search(pattern, name, re.I)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", type=int, default=15)
    parser.add_argument("--active", type=int, default=10)
    parser.add_argument("--micro", type=int, default=32)
    parser.add_argument("--speed", default="auto", choices=["auto", "fast", "exact"], help="train.speed.mode")
    parser.add_argument("--residual", choices=["fp32", "bf16"], help="train.speed.residual_dtype")
    for name in ("fp8-head", "fp8-body", "fp8-weight-grad", "tune-kernels"):
        parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=f"train.speed.{name.replace('-', '_')}")
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                        help="train.speed.compile_mode; the default leaves CUDA graphs out, so each kernel is seen by the profiler")
    parser.add_argument("--top", type=int, default=15, help="how many of the longest kernels to list")
    args = parser.parse_args()
    quiet_transformers()
    p = PRESETS["gpt2-124m"] | {"micro": args.micro}
    world = distributed.setup("auto")
    torch.manual_seed(0)
    config = LtmConfig(vocab_size=p["vocab"], hidden_size=p["d"], num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
                       num_key_value_heads=p["heads"], max_position_embeddings=p["seq"], tie_word_embeddings=True)
    model = LtmForCausalLM(config)
    steps = args.skip + args.active + 1
    tokens = np.random.default_rng(0).integers(0, p["vocab"], size=(steps + 1) * p["micro"] * p["seq"] + 1, dtype=np.uint16)
    batches = ShardBatches(tokens, p["seq"], p["micro"], p["micro"], 0, 1)
    speed = SpeedConfig(mode=args.speed, residual_dtype=args.residual, fp8_head=args.fp8_head, fp8_body=args.fp8_body,
                        fp8_weight_grad=args.fp8_weight_grad, tune_kernels=args.tune_kernels, compile_mode=args.compile_mode)
    tc = TrainConfig(steps=steps, batch_size=p["micro"], micro_batch_size=p["micro"], lr=6e-4, warmup_steps=10,
                     eval_every=10**9, logger="none", threads=None, speed=speed)
    plan = schedule(wait=args.skip - 2, warmup=2, active=args.active, repeat=1)
    with tempfile.TemporaryDirectory() as out, profile(activities=[ProfilerActivity.CUDA], schedule=plan) as prof:
        run = prepare(model, None, tc, batches, loss_windows(tokens[: p["seq"] + 1], p["seq"]), Path(out), world)
        fit(run, on_step=lambda _: prof.step())
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    active = records[args.skip : args.skip + args.active + 1]  # the step boundaries around the profiled steps
    wall_ms = (active[-1]["elapsed_s"] - active[0]["elapsed_s"]) * 1000
    per_group: dict[str, float] = defaultdict(float)
    per_kernel: dict[str, float] = defaultdict(float)
    for e in kernels:
        ms = e.time_range.elapsed_us() / 1000 / args.active
        per_group[group(e.name)] += ms
        per_kernel[e.name] += ms
    step_ms = wall_ms / args.active
    shape = f"gpt2-124m, micro-batch {args.micro}, speed {args.speed}: {run.speed.describe()}, {args.active} steps profiled"
    for name, ms in sorted(per_group.items(), key=lambda kv: -kv[1]):
        emit("train_profile", f"gpu_ms_per_step.{name}", ms, "ms", shape=shape, share_of_step=round(ms / step_ms, 4))
    emit("train_profile", "step_ms", step_ms, "ms", shape=shape)
    emit("train_profile", "gpu_idle_share", max(0.0, 1 - sum(per_group.values()) / step_ms), "fraction", shape=shape)
    for name, ms in sorted(per_kernel.items(), key=lambda kv: -kv[1])[: args.top]:
        print(json.dumps({"kernel": name[:120], "ms_per_step": round(ms, 3), "group": group(name)}), flush=True)


if __name__ == "__main__":
    main()
