"""The output projection and the cross-entropy as one autograd function whose three products run
in FP8 (`train.speed.fp8_head`). The head is the largest matrix of a small model (vocabulary x
width: about a quarter of a GPT-2-124M's training FLOPs), so it is where FP8 tensor cores pay.

Forward: the hidden states and the weight are cast to float8 e4m3, each scaled as a whole so its
largest magnitude meets the format's largest (dynamic per-tensor scaling; both tensors are small
next to the logits), and the bf16 logits feed a log-sum-exp. The loss is the last operation, so
the logits' gradient is known up to a scalar already here: (softmax - one-hot) x grad / tokens.
Every entry of softmax - one-hot lies in [-1, 1], so it is cast to e5m2 at a fixed scale in the
same kernel that reads the logits for the log-sum-exp (under torch.compile), and the logits never
outlive the forward pass: the backward pass reads half the bytes and the activation memory drops
by the logits' size. Backward: grad / tokens becomes the FP8 product's scale, and two FP8 products
give the gradients of the hidden states and of the weight (the weight's accumulates in fp32).

torch._scaled_mm also runs on the CPU (slowly), which is how the tests check it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltm.model.fp8_linear import E4M3, E5M2, column_major, to_fp8

class _FP8HeadLoss(torch.autograd.Function):
    """Mean cross-entropy of logits = hidden @ weight.T over the labels that are not ignore_index."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        h8, h_inv = to_fp8(hidden, E4M3)
        w8, w_inv = to_fp8(weight, E4M3)
        logits = torch._scaled_mm(h8, w8.t(), scale_a=h_inv, scale_b=w_inv, out_dtype=torch.bfloat16)
        lse = torch.logsumexp(logits.float(), dim=-1)
        valid = labels != ignore_index
        target = labels.masked_fill(~valid, 0)
        picked = logits.gather(1, target[:, None]).squeeze(1).float()
        count = valid.sum().clamp(min=1)
        # softmax - one-hot, in [-1, 1], times the format's largest value; ignored rows are zero.
        top = torch.finfo(E5M2).max
        columns = torch.arange(logits.shape[1], device=logits.device)
        unit = torch.exp(logits.float() - lse[:, None]) - (columns[None, :] == target[:, None]).float()
        g8 = (unit * valid[:, None] * top).to(E5M2)
        ctx.save_for_backward(h8, h_inv, w8, w_inv, g8, count)
        ctx.dtypes = hidden.dtype, weight.dtype
        return ((lse - picked) * valid).sum() / count

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h8, h_inv, w8, w_inv, g8, count = ctx.saved_tensors
        g_inv = grad.float() / (count * torch.finfo(E5M2).max)  # signed: _scaled_mm multiplies it back
        hidden_dtype, weight_dtype = ctx.dtypes
        grad_hidden = torch._scaled_mm(g8, column_major(w8), scale_a=g_inv, scale_b=w_inv, out_dtype=torch.bfloat16)
        grad_weight = None
        if ctx.needs_input_grad[1]:  # a frozen head (LoRA) needs none
            grad_weight = torch._scaled_mm(g8.t().contiguous(), column_major(h8), scale_a=g_inv, scale_b=h_inv,
                                           out_dtype=torch.float32).to(weight_dtype)
        return grad_hidden.to(hidden_dtype), grad_weight, None, None


def fp8_head_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy of (hidden @ weight.T) against labels, with FP8 products; hidden (..., d),
    weight (vocab, d), labels (...). The GPU kernels take sides that are multiples of 16: d and
    vocab must be; the token count is padded with ignored rows when it is not."""
    rows, labels = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    pad = -rows.shape[0] % 16
    if pad:
        rows, labels = F.pad(rows, (0, 0, 0, pad)), F.pad(labels, (0, pad), value=ignore_index)
    return _FP8HeadLoss.apply(rows, weight, labels, ignore_index)

