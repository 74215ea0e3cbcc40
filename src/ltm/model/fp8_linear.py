"""The decoder layers' matrix products in FP8 while training (`train.fp8_body: true`), with one
scale per row.

Each product y = x @ W.T runs through torch._scaled_mm with x and W in float8 e4m3, every row
(token, or output feature) scaled on its own so its largest magnitude meets the format's largest.
A row is one token's width (768 at GPT-2-124M), so its scale comes out of the same kernel that
writes the row (torch.compile fuses the cast into the RMSNorm, SwiGLU or RoPE kernel before it):
no pass over the whole tensor for a global maximum, and no transposed copies, which is what made
per-tensor FP8 for every product cost what it saved at this width (docs/training.md).

Backward: the gradient of x is a second rowwise FP8 product (the output gradient scaled per token,
the weight per input feature); the gradient of W sums over tokens, across the rows that carry the
scales, so it stays a bf16 product. Two of a linear layer's three products run in FP8.

torch._scaled_mm also runs on the CPU (slowly), which is how the tests check it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def to_fp8(t: torch.Tensor, dtype: torch.dtype, rowwise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """t in `dtype`, scaled so its largest magnitude (in each row, when rowwise) is the format's
    largest; and the inverse scale (one per row: shape (rows, 1)) that _scaled_mm multiplies back."""
    top = torch.finfo(dtype).max
    magnitude = t.detach().abs()
    amax = (magnitude.amax(dim=-1, keepdim=True) if rowwise else magnitude.amax()).float().clamp(min=1e-12)
    return (t.float() * (top / amax)).clamp(-top, top).to(dtype), amax / top


def column_major(t: torch.Tensor) -> torch.Tensor:
    """The same matrix laid out column by column, as _scaled_mm wants its second operand."""
    return t.t().contiguous().t()


def fp8_supported(device: torch.device) -> bool:
    """FP8 tensor cores: compute capability 8.9 (Ada) or newer. The CPU runs the same code slowly."""
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9))


class _RowwiseFP8Matmul(torch.autograd.Function):
    """y = x @ weight.T for x (M, K) and weight (N, K); FP8 forward and input gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        x8, x_inv = to_fp8(x, E4M3, rowwise=True)
        w8, w_inv = to_fp8(weight, E4M3, rowwise=True)
        ctx.save_for_backward(x, weight)
        return torch._scaled_mm(x8, w8.t(), scale_a=x_inv, scale_b=w_inv.t(), out_dtype=out_dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        g8, g_inv = to_fp8(grad, E4M3, rowwise=True)
        # One scale per input feature: the rows of weight.T, laid out so that .t() is column-major.
        wt8, wt_inv = to_fp8(weight.t().contiguous(), E4M3, rowwise=True)
        grad_x = torch._scaled_mm(g8, wt8.t(), scale_a=g_inv, scale_b=wt_inv.t(), out_dtype=grad.dtype)
        grad_w = None
        if ctx.needs_input_grad[1]:  # a frozen weight (LoRA's base) needs none
            grad_w = grad.t().mm(x.to(grad.dtype)).to(weight.dtype)
        return grad_x.to(x.dtype), grad_w, None


class FP8Linear(nn.Linear):
    """An nn.Linear (no bias) whose training product runs in FP8; it keeps the original's weight
    Parameter, so optimizers and checkpoints are unchanged. Evaluation and generation keep the
    plain product."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        autocast = torch.is_autocast_enabled(x.device.type)
        out_dtype = torch.get_autocast_dtype(x.device.type) if autocast else x.dtype
        rows = x.reshape(-1, x.shape[-1]).to(out_dtype)
        tokens, pad = rows.shape[0], -rows.shape[0] % 16  # the GPU kernels take sides that are multiples of 16
        if pad:
            rows = F.pad(rows, (0, 0, 0, pad))
        with torch.autocast(x.device.type, enabled=False):  # the products choose their own precision
            y = _RowwiseFP8Matmul.apply(rows, self.weight, out_dtype)
        return y[:tokens].view(*x.shape[:-1], self.out_features)


def use_fp8_linears(root: nn.Module) -> tuple[int, int]:
    """Turn every bias-free nn.Linear under `root` whose sides are multiples of 16 (what the FP8
    kernels take) into an FP8Linear, in place: the same Parameter objects. Returns how many were
    turned and how many were left as they were (a soft-routing gate's few outputs)."""
    changed = kept = 0
    for module in root.modules():
        if type(module) is nn.Linear and module.bias is None:
            if module.in_features % 16 or module.out_features % 16:
                kept += 1
            else:
                module.__class__ = FP8Linear
                changed += 1
    return changed, kept
