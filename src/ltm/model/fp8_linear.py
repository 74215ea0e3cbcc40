"""The decoder layers' matrix products in FP8 while training (`train.speed.fp8_body`), with fixed
scales for what flows through them, and the FP8 helpers the head (fp8_head.py) shares.

Why fixed scales: a GPU held at its power limit trains as fast as its energy per token allows, and
an FP8 product spends about a third less energy per FLOP than a bf16 one (docs/training.md). A cast
pays only when it costs almost nothing: with a scale known in advance it is one pointwise step,
which torch.compile fuses into the kernel that writes the product's input (RMSNorm, SwiGLU, RoPE's
backward...). Scales measured from the data need a pass over the tensor first, and with one scale
per row those passes spent what FP8 saved (measured on the H100: docs/training.md).

Each product y = x @ W.T:
- forward: x in float8 e4m3 as it is (scale 1: the inputs are normalized activations, SwiGLU and
  attention outputs, of order 1; magnitudes above 448 saturate), W in e4m3 scaled by its own
  largest magnitude (a small tensor, so measuring it is cheap);
- backward, the input's gradient: the output's gradient in float8 e5m2 multiplied by the number of
  tokens (a mean loss over n tokens gives per-token gradients of order 1/n; e5m2's 32 binades
  leave room on both sides, also for the further 1/k of k accumulated micro-batches), times W in
  e4m3 again;
- backward, the weight's gradient: a bf16 product by default, which needs no transposed copies;
  with `train.speed.fp8_weight_grad` an FP8 product of the same e5m2 gradient and the e4m3 input, both
  transposed (the tokens are the summed side, and FP8 products want it contiguous). The forward
  pass then keeps the e4m3 input for it instead of the bf16 one.

torch._scaled_mm also runs on the CPU (slowly), which is how the tests check it.
"""

from __future__ import annotations

import torch
from torch import nn

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def to_fp8(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """t in `dtype`, scaled so its largest magnitude is the format's largest; and the inverse scale
    that _scaled_mm multiplies back."""
    top = torch.finfo(dtype).max
    amax = t.detach().abs().amax().float().clamp(min=1e-12)
    return saturated(t, dtype, top / amax), amax / top


def saturated(t: torch.Tensor, dtype: torch.dtype, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """t * scale in `dtype`, magnitudes beyond the format's largest held at it (a plain cast would
    turn them into NaN for e4m3fn, inf for e5m2)."""
    top = torch.finfo(dtype).max
    return (t.float() * scale).clamp(-top, top).to(dtype)


def column_major(t: torch.Tensor) -> torch.Tensor:
    """The same matrix laid out column by column, as _scaled_mm wants its second operand."""
    return t.t().contiguous().t()


def fp8_supported(device: torch.device) -> bool:
    """FP8 tensor cores: compute capability 8.9 (Ada) or newer. The CPU runs the same code slowly."""
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9))


class _FixedScaleFP8Matmul(torch.autograd.Function):
    """y = x @ weight.T for x (M, K) in bf16 and weight (N, K): the forward product and the input's
    gradient in FP8; the weight's gradient in FP8 too with `fp8_weight_grad`, else in bf16."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, fp8_weight_grad: bool) -> torch.Tensor:
        w8, w_inv = to_fp8(weight, E4M3)
        x8 = saturated(x, E4M3)
        kept = None  # what the weight's gradient needs of the input; a frozen weight (LoRA's base) needs nothing
        if ctx.needs_input_grad[1]:
            # FP8 products want the summed side contiguous, and the weight's gradient sums over the
            # tokens: the FP8 input is kept transposed (one byte per value where bf16 takes two).
            kept = x8.t().contiguous() if fp8_weight_grad else x
        ctx.save_for_backward(kept, w8, w_inv)
        ctx.fp8_weight_grad, ctx.weight_dtype = fp8_weight_grad, weight.dtype
        one = torch.ones((), device=x.device)
        return torch._scaled_mm(x8, w8.t(), scale_a=one, scale_b=w_inv, out_dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        kept, w8, w_inv = ctx.saved_tensors
        tokens = grad.shape[0]
        g8 = saturated(grad, E5M2, tokens) if ctx.needs_input_grad[0] or ctx.fp8_weight_grad else None
        g_inv = torch.full((), 1.0 / tokens, device=grad.device)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch._scaled_mm(g8, column_major(w8), scale_a=g_inv, scale_b=w_inv, out_dtype=grad.dtype)
        if ctx.needs_input_grad[1]:
            if ctx.fp8_weight_grad:
                one = torch.ones((), device=grad.device)
                grad_w = torch._scaled_mm(g8.t().contiguous(), kept.t(), scale_a=g_inv, scale_b=one, out_dtype=torch.float32)
            else:
                grad_w = grad.t().mm(kept.to(grad.dtype))
            grad_w = grad_w.to(ctx.weight_dtype)
        return grad_x, grad_w, None


class FP8Linear(nn.Linear):
    """An nn.Linear (no bias) whose training product runs in FP8; it keeps the original's weight
    Parameter, so optimizers and checkpoints are unchanged. Evaluation and generation keep the
    plain product. `fp8_weight_grad` (set by use_fp8_linears) puts the weight's gradient in FP8 too."""

    fp8_weight_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        autocast = torch.is_autocast_enabled(x.device.type)
        dtype = torch.get_autocast_dtype(x.device.type) if autocast else torch.bfloat16
        rows = x.reshape(-1, x.shape[-1]).to(dtype)
        tokens, pad = rows.shape[0], -rows.shape[0] % 16  # the GPU kernels take sides that are multiples of 16
        if pad:
            rows = torch.nn.functional.pad(rows, (0, 0, 0, pad))
        with torch.autocast(x.device.type, enabled=False):  # the products choose their own precision
            y = _FixedScaleFP8Matmul.apply(rows, self.weight, self.fp8_weight_grad)
        return y[:tokens].view(*x.shape[:-1], self.out_features)


def use_fp8_linears(root: nn.Module, fp8_weight_grad: bool = False) -> tuple[int, int]:
    """Turn every bias-free nn.Linear under `root` whose sides are multiples of 16 (what the FP8
    kernels take) into an FP8Linear, in place: the same Parameter objects. LoRA's adapters (peft's
    lora_A, lora_B) stay as they are: they are what trains. Returns how many were turned and how
    many were left as they were (a soft-routing gate's few outputs)."""
    changed = kept = 0
    for name, module in root.named_modules():
        if any(part.startswith("lora_") for part in name.split(".")):
            continue
        if type(module) is nn.Linear and module.bias is None:
            if module.in_features % 16 or module.out_features % 16:
                kept += 1
            else:
                module.__class__ = FP8Linear
                module.fp8_weight_grad = fp8_weight_grad
                changed += 1
    return changed, kept
