"""How ltm's model computes while it trains: the residual stream's dtype under autocast and the FP8
products (the output projection with its loss, the decoder layers' products, their weight
gradients). A run's speed plan (ltm.train.speed) chooses them and `set_numerics` applies them
before training starts, so the training loop receives a model that is ready and never changes it.
Evaluation and generation are unaffected by those: the FP8 paths run in training mode only. Both
compute under the one autocast choice, `bf16_autocast`; eval may override it (eval.precision,
`eval_autocast`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ltm.model.fp8_linear import use_fp8_linears
from ltm.model.modeling import LtmForCausalLM


@dataclass(frozen=True)
class Numerics:
    residual_bf16: bool = False  # under bf16 autocast, the residual stream in bf16 (half the elementwise traffic)
    fp8_head: bool = False
    fp8_body: bool = False
    fp8_weight_grad: bool = False  # with fp8_body

    def describe(self) -> str:
        fp8 = [name for name, on in (("head", self.fp8_head), ("decoder products", self.fp8_body),
                                     ("weight gradients", self.fp8_weight_grad)) if on]
        return (f"FP8 {', '.join(fp8)}" if fp8 else "no FP8") + (", bf16 residual stream" if self.residual_bf16 else "")


def bf16_autocast(precision: str | None, device: torch.device) -> bool:
    """Whether a run computes under bf16 autocast (train.speed.precision): bf16, or auto (unset) on
    a GPU; training and evaluation ask the same question, so a model is evaluated as it trained."""
    return precision == "bf16" or (precision in (None, "auto") and device.type == "cuda")


def eval_autocast(eval_precision: str, train_precision: str | None, device: torch.device) -> torch.autocast:
    """The autocast eval computes under (eval.precision): auto evaluates a model as it trained
    (train.speed.precision); fp32 or bf16 fix it, e.g. so runs trained on different code are
    measured in the same numerics."""
    precision = train_precision if eval_precision == "auto" else eval_precision
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast(precision, device))


def set_numerics(model: nn.Module, numerics: Numerics) -> str:
    """Apply `numerics` to each LtmForCausalLM inside `model` (under a LoRA wrapper too: the frozen
    base's products run in FP8, the adapters keep theirs); another model trains as it is. Returns
    what was done, for the log."""
    ours = [m for m in model.modules() if isinstance(m, LtmForCausalLM)]
    if not ours:
        return "a model of another kind: its own numerics"
    notes = []
    for m in ours:
        m.model.autocast_residual = numerics.residual_bf16
        m.fp8_head = numerics.fp8_head
        if numerics.fp8_body:
            turned, kept = use_fp8_linears(m.model.layers, numerics.fp8_weight_grad)
            notes.append(f"{turned} decoder products in FP8" + (f", {kept} kept in bf16 (a side not a multiple of 16)" if kept else ""))
    return numerics.describe() + (f" ({'; '.join(notes)})" if notes else "")
