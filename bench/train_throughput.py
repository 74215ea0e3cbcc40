"""Training throughput of ltm's own loop (src/ltm/train/loop.py: fit), optionally side by side
with nanoGPT's train.py at the same shape and batch, in the same command.

    python bench/train_throughput.py --preset gpt2-124m [--nanogpt DIR] [--steps 60]
    torchrun --nproc_per_node 2 bench/train_throughput.py --preset gpt2-124m --single GPU1.jsonl
    python bench/train_throughput.py --preset cpu-10m

gpt2-124m: 12 layers, width 768, 12 heads (no grouping), context 1024, vocabulary 50304, bf16,
torch.compile, fused AdamW, micro-batch 32 per GPU. Random tokens (throughput does not depend on
them). Speed is taken between step `--skip` and the last step, so compilation is left out.
MFU = training FLOPs per token (6N + 12·L·d·T, as nanoGPT and the PaLM appendix count) x tokens/s /
the GPU's bf16 dense peak. nanoGPT (DIR holds its train.py, model.py, configurator.py; not part
of ltm) is run on random tokens written to DIR/data/synthetic and timed from its own log lines;
its MFU uses the same FLOP count for the same shape.
On one GPU with nvidia-ml-py installed it also prints the energy each loop spends per token, its
mean power and mean SM clock over its timed steps (bench/power.py): at the power limit those
decide the speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, quiet_transformers  # noqa: E402
from power import PowerLog  # noqa: E402

from ltm.config import InitiationConfig, SpeedConfig, TrainConfig  # noqa: E402
from ltm.model import LtmConfig, LtmForCausalLM  # noqa: E402
from ltm.train import distributed  # noqa: E402
from ltm.train.adapters import Trainable, with_lora  # noqa: E402
from ltm.train.data import ShardBatches, loss_windows  # noqa: E402
from ltm.train.hardware import peak_flops  # noqa: E402
from ltm.train.loop import fit, prepare  # noqa: E402

COMPILE_MODES = [mode for mode in typing.get_args(typing.get_args(SpeedConfig.model_fields["compile_mode"].annotation)[0])]
PRESETS = {
    "gpt2-124m": {"layers": 12, "d": 768, "heads": 12, "seq": 1024, "vocab": 50304, "micro": 32, "steps": 150, "skip": 30},
    "cpu-10m": {"layers": 6, "d": 384, "heads": 6, "seq": 256, "vocab": 4096, "micro": 8, "steps": 24, "skip": 4},
    # A cell of Study 1 (experiments/repetition-base.yaml, 13.8M parameters): what a study grid trains, eagerly.
    "study-1": {"layers": 6, "d": 384, "heads": 6, "seq": 512, "vocab": 8192, "micro": 32, "steps": 80, "skip": 20},
}


def measure_ltm(p: dict, world, steps: int, skip: int, speed: SpeedConfig, optimizer: str = "adamw",
                lora: bool = False, strategy: str = "ddp", hf: bool = False, config: LtmConfig | None = None) -> dict:
    """Train on random tokens; `config` (its vocabulary and context those of `p`) replaces the
    preset's plain model, e.g. with scene-aware parts on (bench/scene_parts_throughput.py)."""
    torch.manual_seed(0)
    config = config or LtmConfig(vocab_size=p["vocab"], hidden_size=p["d"], num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
                                 num_key_value_heads=p["heads"], max_position_embeddings=p["seq"], tie_word_embeddings=True)
    model = LtmForCausalLM(config)
    if hf:  # what `ltm tune` trains: a transformers model of the same shape
        model = LlamaForCausalLM(LlamaConfig(**{key: getattr(config, key) for key in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "max_position_embeddings", "tie_word_embeddings")}))
    if lora:  # as the initiation stage and `ltm tune` train it: LoRA adapters (the config's defaults), the base frozen
        model = Trainable(with_lora(model, InitiationConfig(mode="lora")), "LoRA")
    elif hf:
        model = Trainable(model, "every parameter")
    batch = p["micro"] * world.size * p["accumulation"]
    tokens = np.random.default_rng(0).integers(0, p["vocab"], size=(steps + 1) * batch * p["seq"] + 1, dtype=np.uint16)
    batches = ShardBatches(tokens, p["seq"], batch, p["micro"], world.rank, world.size)
    windows = loss_windows(tokens[: p["seq"] + 1], p["seq"])
    tc = TrainConfig(steps=steps, batch_size=batch, micro_batch_size=p["micro"], lr=6e-4 if optimizer == "adamw" else 0.02,
                     warmup_steps=10, eval_every=10**9, logger="none", speed=speed, threads=None, optimizer=optimizer, distributed=strategy)
    with tempfile.TemporaryDirectory() as out:
        before = time.perf_counter()
        run = prepare(model, None, tc, batches, windows, Path(out), world)
        fit(run)
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()] if world.main else []
    result = {"parameters": model.num_parameters(), "flops_per_token": model.flops_per_token(p["seq"]), "speed": run.speed.describe()}
    if world.main:
        first, last = records[skip - 1], records[-1]
        result["tokens_per_s"] = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
        result["final_loss"] = last["loss"]
        # elapsed_s counts from a moment shortly after `before` (fit first builds its optimizer):
        # a 2 s margin at the start keeps the span inside the timed steps.
        result["span"] = (before + first["elapsed_s"] + 2.0, before + last["elapsed_s"])
    if world.device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(world.device) / 2**30
    return result


def measure_nanogpt(folder: Path, p: dict, steps: int, skip: int) -> tuple[float, tuple[float, float]]:
    """nanoGPT's tokens/s from its own step times, and the host-time span of the timed steps (it
    prints each step's line right after reading its loss, so a line's arrival is the step's end)."""
    data = folder / "data" / "synthetic"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 20_000_000), ("val", 1_000_000)):
        rng.integers(0, 50257, size=n, dtype=np.uint16).tofile(data / f"{split}.bin")
    args = ["--dataset=synthetic", f"--batch_size={p['micro']}", f"--block_size={p['seq']}",
            f"--gradient_accumulation_steps={p['accumulation']}",
            f"--n_layer={p['layers']}", f"--n_head={p['heads']}", f"--n_embd={p['d']}", f"--max_iters={steps}", "--lr_decay_iters=1000",
            "--eval_interval=100000", "--eval_iters=1", "--log_interval=1", "--compile=True", "--dtype=bfloat16", "--dropout=0.0",
            "--bias=False", "--always_save_checkpoint=False", "--wandb_log=False", "--out_dir=out"]
    times, arrivals, lines = [], [], []
    # -u: unbuffered, or its lines would reach this pipe in blocks and arrive long after their steps.
    with subprocess.Popen([sys.executable, "-u", "train.py", *args], cwd=folder, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as run:
        for line in run.stdout:
            lines.append(line)
            m = re.match(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", line)
            if m and int(m.group(1)) >= skip:
                times.append(float(m.group(2)))
                arrivals.append(time.perf_counter())
    if run.returncode != 0:
        raise RuntimeError("nanoGPT failed:\n" + "".join(lines[-40:]))
    return p["micro"] * p["accumulation"] * p["seq"] / (np.mean(times) / 1000), (arrivals[0], arrivals[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="gpt2-124m")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--skip", type=int, help="steps left out of the timing (default: the preset's)")
    parser.add_argument("--nanogpt", type=Path, help="folder with nanoGPT's train.py, model.py, configurator.py")
    parser.add_argument("--single", type=Path, help="(torchrun) the one-GPU result file, for the scaling efficiency")
    parser.add_argument("--speed", default="auto", choices=["auto", "fast", "exact"], help="train.speed.mode (what a user gets by default: auto)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, help="train.speed.compile_mode (default: what --speed picks)")
    parser.add_argument("--tune-kernels", action=argparse.BooleanOptionalAction, help="train.speed.tune_kernels")
    parser.add_argument("--micro", type=int, help="micro-batch per GPU (default: the preset's)")
    parser.add_argument("--accumulation", type=int, default=1, help="micro-batches per optimizer step (both ltm and "
                        "nanoGPT); 16 x 32 x 1024 = 524,288 tokens is GPT-2's batch")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"])
    parser.add_argument("--distributed", default="ddp", choices=["ddp", "fsdp"], help="train.distributed (under torchrun)")
    parser.add_argument("--hf", action="store_true", help="a transformers Llama of the same shape, as `ltm tune` trains one")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters on the frozen model, as the initiation stage does")
    parser.add_argument("--residual", choices=["fp32", "bf16"], help="train.speed.residual_dtype")
    for name in ("fp8-head", "fp8-body", "fp8-weight-grad"):
        parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=f"train.speed.{name.replace('-', '_')}")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction, help="train.speed.deterministic")
    parser.add_argument("--attention", default="default", choices=["default", "cudnn"],
                        help="cudnn: cuDNN's fused attention instead of PyTorch's flash kernel (the SDPA backend flags)")
    args = parser.parse_args()
    if args.attention == "cudnn":
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_cudnn_sdp(True)
    quiet_transformers()
    p = PRESETS[args.preset] | ({"micro": args.micro} if args.micro else {}) | ({"skip": args.skip} if args.skip else {}) \
        | {"accumulation": args.accumulation}
    steps = args.steps or p["steps"]
    world = distributed.setup("auto")
    speed = SpeedConfig(mode=args.speed, compile=False if args.no_compile else None, compile_mode=args.compile_mode,
                        tune_kernels=args.tune_kernels, residual_dtype=args.residual, fp8_head=args.fp8_head, fp8_body=args.fp8_body,
                        fp8_weight_grad=args.fp8_weight_grad, deterministic=args.deterministic)
    power = PowerLog.open(world.device) if world.size == 1 else None
    ours = measure_ltm(p, world, steps, p["skip"], speed, args.optimizer, args.lora, args.distributed, args.hf)
    if not world.main:
        distributed.teardown(world)
        return
    peak = peak_flops(world.device)
    shape = f"{args.preset}, micro-batch {p['micro']} x {world.size} device(s) x {args.accumulation} accumulated, speed {args.speed}: " + (
        f"{ours['speed']}, {args.optimizer}") + (", cuDNN attention" if args.attention == "cudnn" else "") + (
        ", LoRA initiation" if args.lora else "") + (", transformers Llama" if args.hf else "") + (
        f", {args.distributed.upper()}" if world.size > 1 else "")
    bench = "train_throughput"
    emit(bench, "tokens_per_s", ours["tokens_per_s"], "tokens/s", shape=shape, parameters=ours["parameters"], world=world.size)
    # Random tokens: the loss should sit near ln(vocabulary); a NaN or a drift says a kernel is wrong.
    emit(bench, "final_loss", ours["final_loss"], "nats", shape=shape)
    if peak:
        if not args.lora:  # LoRA computes no weight gradients: 6N FLOPs per token would overstate its work
            mfu = ours["flops_per_token"] * ours["tokens_per_s"] / (peak * world.size)
            emit(bench, "mfu", mfu, "fraction", target=0.5, shape=shape)
        emit(bench, "peak_memory_gib", ours["peak_memory_gib"], "GiB", shape=shape)
    spans = {"": (ours["span"], ours["tokens_per_s"])}  # J/token figures, by metric prefix
    if args.single:
        single = next(json.loads(line)["value"] for line in args.single.read_text().splitlines()
                      if json.loads(line)["metric"] == "tokens_per_s")
        emit(bench, "scaling_efficiency", ours["tokens_per_s"] / (world.size * single), "fraction", shape=shape,
             single_gpu_tokens_per_s=single)
    if args.nanogpt:
        gc.collect()  # nanoGPT runs in another process: hand it the memory this one no longer needs
        torch.cuda.empty_cache()
        theirs, span = measure_nanogpt(args.nanogpt, p, steps, p["skip"])
        emit(bench, "nanogpt_tokens_per_s", theirs, "tokens/s", shape=shape)
        spans["nanogpt_"] = (span, theirs)
        if peak:
            emit(bench, "nanogpt_mfu", ours["flops_per_token"] * theirs / peak, "fraction", shape=shape)
        emit(bench, "tokens_per_s_ratio_vs_nanogpt", ours["tokens_per_s"] / theirs, "ratio", target=1.3, shape=shape)
    if power:
        power.close()
        for prefix, (span, tokens_per_s) in spans.items():
            used = power.between(*span)
            if used is None:
                continue
            emit(bench, f"{prefix}energy_per_token", used["power_w"] / tokens_per_s * 1000, "mJ/token", shape=shape)
            emit(bench, f"{prefix}mean_power", used["power_w"], "W", shape=shape)
            emit(bench, f"{prefix}mean_sm_clock", used["sm_clock_mhz"], "MHz", shape=shape)
    distributed.teardown(world)


if __name__ == "__main__":
    main()
