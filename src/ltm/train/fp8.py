"""FP8 matrix products for training (`train.fp8: true`): every nn.Linear of the model runs through
torch._scaled_mm with inputs and weights in float8 e4m3 and gradients in e5m2, each tensor scaled
as a whole so that its largest magnitude meets the format's largest value (dynamic, per-tensor
scaling, the usual recipe for FP8 training). Master weights, optimizer state and everything outside
the matrix products stay as they were; the state dict does not change.

On a Hopper GPU the FP8 tensor cores do twice the bf16 work per cycle; the scaling and casting
around each product are elementwise passes that torch.compile fuses into the neighbouring kernels.
The same code runs on the CPU (slowly), which is how the tests check it.
"""

from __future__ import annotations

import torch
from torch import nn

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def _cast(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """t in `dtype`, scaled so that its largest magnitude is the format's largest; and the inverse
    scale that _scaled_mm multiplies back."""
    top = torch.finfo(dtype).max
    amax = t.detach().abs().amax().float().clamp(min=1e-12)
    scale = top / amax
    return (t.float() * scale).clamp(-top, top).to(dtype), scale.reciprocal()


def _column_major(t: torch.Tensor) -> torch.Tensor:
    """The same matrix laid out column by column, as _scaled_mm wants its second operand."""
    return t.t().contiguous().t()


class _FP8Matmul(torch.autograd.Function):
    """y = x @ w.T for x (M, K) and w (N, K), in FP8 forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        x8, x_inv = _cast(x, E4M3)
        w8, w_inv = _cast(weight, E4M3)
        ctx.save_for_backward(x8, x_inv, w8, w_inv)
        ctx.weight_dtype = weight.dtype
        return torch._scaled_mm(x8, w8.t(), scale_a=x_inv, scale_b=w_inv, out_dtype=out_dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x8, x_inv, w8, w_inv = ctx.saved_tensors
        g8, g_inv = _cast(grad, E5M2)
        grad_x = torch._scaled_mm(g8, _column_major(w8), scale_a=g_inv, scale_b=w_inv, out_dtype=grad.dtype)
        grad_w = torch._scaled_mm(g8.t().contiguous(), _column_major(x8), scale_a=g_inv, scale_b=x_inv, out_dtype=torch.float32)
        return grad_x, grad_w.to(ctx.weight_dtype), None


class FP8Linear(nn.Linear):
    """An nn.Linear (no bias) whose product runs in FP8; it keeps the original's weight Parameter,
    so tied weights stay tied and checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # a speed trick for training: evaluation and generation keep the plain product
            return super().forward(x)
        out_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        y = _FP8Matmul.apply(x.reshape(-1, x.shape[-1]), self.weight, out_dtype)
        return y.view(*x.shape[:-1], self.out_features)


def require_fp8(device: torch.device) -> None:
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise ValueError(f"train.fp8 needs a GPU with FP8 tensor cores (compute capability 8.9+: Ada, Hopper or newer); this run is on {device}")


def use_fp8(model: nn.Module) -> int:
    """Turn every bias-free nn.Linear whose sides are multiples of 16 (what the FP8 kernels take)
    into an FP8Linear, in place; returns how many."""
    changed = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.bias is None and module.in_features % 16 == 0 and module.out_features % 16 == 0:
            module.__class__ = FP8Linear  # in place: the same Parameters, so optimizers and tied weights are untouched
            changed += 1
    return changed
