"""A run's `train.speed` section turned into what this run does on this hardware: autocast, compile
and its mode, kernel tuning, and the model's numerics (ltm.model.numerics). `auto` picks what was
measured to pay (docs/training.md, "Speed"); a switch set in the config wins, and one this machine
cannot honour is refused by name before anything runs.

What `auto` picks for ltm's own model on one GPU with FP8 tensor cores (compute capability 8.9+:
Ada, Hopper), when the model compiles: the FP8 head, FP8 decoder products and FP8 weight gradients
(H100, GPT-2-124M shape: 1.31x nanoGPT in one command; the final held-out loss of 400-step runs
within run-to-run noise of bf16, bench/results/train_precision.h100.jsonl), a bf16 residual
stream, and CUDA graphs; kernel tuning only when the run is long enough to repay its minutes of
compilation. Elsewhere (the CPU, a GPU without FP8, an eager model, several processes, a
self-looped model, a user's transformers model) it keeps what is safe there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ltm.config import SpeedConfig
from ltm.model.fp8_linear import fp8_supported
from ltm.model.modeling import LtmForCausalLM, LtmModel
from ltm.model.numerics import Numerics, bf16_autocast

# Kernel tuning adds about 2-5 minutes of compilation and bought about 3% on the H100 at 124M
# (docs/training.md): it pays back on runs of about an hour and a half.
TUNING_PAYS_AFTER_S = 5400.0
ASSUMED_MFU = 0.4  # to estimate a run's length before it runs (measured 42-54% on the H100 at 124M)


class SpeedError(ValueError):
    """A speed switch this run cannot honour, with what to change."""


@dataclass(frozen=True)
class SpeedPlan:
    autocast: bool  # bf16 autocast
    compile: bool
    compile_mode: str | None  # torch.compile's mode; None when nothing compiles
    tune_kernels: bool
    numerics: Numerics
    deterministic: bool = False  # torch's deterministic algorithms while training (ltm.train.loop)
    reasons: list[str] = field(default_factory=list)  # what was chosen and why, for the log
    warnings: list[str] = field(default_factory=list)  # switches the config sets that do not apply to this model

    @property
    def cuda_graphs(self) -> bool:
        return self.compile_mode == "reduce-overhead"

    def describe(self) -> str:
        parts = ["bf16 autocast" if self.autocast else "fp32",
                 f"torch.compile ({self.compile_mode})" if self.compile else "eager", self.numerics.describe()]
        if self.tune_kernels:
            parts.append("tuned kernels")
        if self.deterministic:
            parts.append("deterministic kernels")
        return ", ".join(parts)


def plan_speed(speed: SpeedConfig, model: torch.nn.Module, device: torch.device, processes: int,
               steps: int, tokens_per_step: int, flops_per_token: float, peak_flops: float | None) -> SpeedPlan:
    """What this run does. `model` is what will train (an LtmForCausalLM, a LoRA wrapper, a user's
    transformers model); `peak_flops` the GPU's bf16 peak, for the run-length estimate."""
    gpu = device.type == "cuda"
    mode = speed.mode
    ours = any(isinstance(m, LtmForCausalLM) for m in model.modules())
    looped = any(isinstance(m, LtmModel) and m.config.loop_core_layers for m in model.modules())
    adapters = any(not p.requires_grad for p in model.parameters())  # LoRA: the base is frozen
    reasons: list[str] = []

    autocast = bf16_autocast(speed.precision, device)
    compile_ = speed.compile if speed.compile is not None else gpu
    compile_mode = speed.compile_mode
    if compile_mode is None:
        graphs = mode != "exact" and (ours or adapters) and not looped and gpu and processes == 1
        compile_mode = "reduce-overhead" if graphs else "default"
    elif compile_mode == "reduce-overhead" and (processes > 1 or looped):
        why = "under torchrun" if processes > 1 else "for a self-looped model (model.loop_core_layers)"
        raise SpeedError(f"train.speed.compile_mode: reduce-overhead (CUDA graphs) is not available {why}; use default or leave it unset")

    fp8_here = gpu and fp8_supported(device)
    heads_fit = all(m.config.vocab_size % 16 == 0 and m.config.hidden_size % 16 == 0 for m in model.modules() if isinstance(m, LtmForCausalLM))
    # FP8 pays only where torch.compile fuses its scaling into the products around it: eager, each
    # product gains a handful of extra kernels, and a Study-1 cell (13.8M parameters) trained at
    # 0.36x the tokens/s of bf16 on the H200 (bench/results/train_throughput.h200.jsonl).
    default_fp8 = mode != "exact" and ours and fp8_here and autocast and compile_
    numerics = Numerics(
        residual_bf16=_chosen(speed.residual_dtype, "bf16", mode != "exact") and autocast,
        fp8_head=_flag(speed.fp8_head, default_fp8 and heads_fit),
        fp8_body=_flag(speed.fp8_body, default_fp8),
        fp8_weight_grad=_flag(speed.fp8_weight_grad, default_fp8 and speed.fp8_body is not False),
    )
    warnings = _refuse_fp8_here(numerics, speed, device, ours, heads_fit, model)
    if not ours:
        numerics = Numerics()
    if default_fp8 and mode == "auto":
        reasons.append("FP8 products (measured 1.31x nanoGPT on the H100, held-out loss within noise)")
    elif mode == "auto" and ours and gpu and not fp8_here:
        reasons.append("no FP8: this GPU has no FP8 tensor cores")
    elif mode == "auto" and ours and fp8_here and not compile_ and not (numerics.fp8_head or numerics.fp8_body):
        reasons.append("no FP8: the model runs eagerly (unfused, FP8 trained a Study-1 cell at 0.36x bf16's speed on the H200)")

    tune = speed.tune_kernels
    if tune is None:
        estimate = steps * tokens_per_step * flops_per_token / (peak_flops * ASSUMED_MFU) if peak_flops else 0.0
        tune = compile_ and gpu and (mode == "fast" or (mode == "auto" and estimate >= TUNING_PAYS_AFTER_S))
        if compile_ and gpu and mode == "auto":
            reasons.append(f"kernel tuning {'on' if tune else 'off'}: the run should take about {estimate / 60:.0f} min "
                           f"(it pays after about {TUNING_PAYS_AFTER_S / 60:.0f})")
    if compile_ and compile_mode == "reduce-overhead":
        reasons.append("CUDA graphs (one GPU)")
    # Some GPU kernels (flash attention's backward pass among them) add partial sums in whatever order
    # the GPU runs them: a run alone repeats, but copies sharing the GPU (an experiment's workers)
    # ended 0.013 nats apart after 188 steps, and identical in torch's strict deterministic mode, at
    # 1.09x the training time (bench/results/experiment_throughput.h200.jsonl).
    deterministic = gpu and _flag(speed.deterministic, mode != "fast")
    return SpeedPlan(autocast, compile_, compile_mode if compile_ else None, bool(tune) and compile_, numerics, deterministic,
                     reasons, warnings)


def _flag(asked: bool | None, default: bool) -> bool:
    return default if asked is None else asked


def _chosen(asked: str | None, value: str, default: bool) -> bool:
    return default if asked is None else asked == value


def _refuse_fp8_here(numerics: Numerics, speed: SpeedConfig, device: torch.device, ours: bool, heads_fit: bool, model) -> list[str]:
    """An FP8 switch the config sets that this run cannot honour is an error, not a silent no; on a
    user's transformers model (`ltm tune` with a config written for ltm's model) it is a warning."""
    asked = [name for name in ("fp8_head", "fp8_body", "fp8_weight_grad") if getattr(speed, name)]
    if not asked:
        return []
    if not ours:
        return [f"train.speed.{name} applies to ltm's own model only; this {type(model).__name__} trains without it" for name in asked]
    if not fp8_supported(device):
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
        raise SpeedError(f"train.speed.{asked[0]} needs FP8 tensor cores (compute capability 8.9+: Ada, Hopper or newer); "
                         f"{gpu} has none: leave it unset")
    if numerics.fp8_head and not heads_fit:
        raise SpeedError("train.speed.fp8_head needs the vocabulary and the width to be multiples of 16 (what the FP8 kernels take)")
    if numerics.fp8_weight_grad and not numerics.fp8_body:
        raise SpeedError("train.speed.fp8_weight_grad needs fp8_body")
    return []
