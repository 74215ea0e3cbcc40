"""The FP8 output projection + cross-entropy (train.fp8_head) against the exact computation, on the CPU."""

import pytest
import torch
import torch.nn.functional as F

from ltm.model.fp8_head import fp8_head_loss


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


def _both(hidden, weight, labels):
    """(loss, grad hidden, grad weight) through FP8, then exactly."""
    out = []
    for fn in (lambda h, w: fp8_head_loss(h, w, labels), lambda h, w: F.cross_entropy(h @ w.t(), labels, ignore_index=-100)):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        loss = fn(h, w)
        (2.5 * loss).backward()  # a grad other than 1 reaches the backward pass
        out.append((loss.item(), h.grad, w.grad))
    return out


def test_loss_and_gradients_follow_the_exact_computation():
    torch.manual_seed(0)
    hidden, weight = torch.randn(96, 48), 0.2 * torch.randn(160, 48)
    labels = torch.randint(0, 160, (96,))
    labels[:7] = -100
    (loss8, gh8, gw8), (loss, gh, gw) = _both(hidden, weight, labels)
    assert loss8 == pytest.approx(loss, rel=0.01)
    assert _cos(gh8, gh) > 0.99 and _cos(gw8, gw) > 0.99
    assert gh8.norm().item() == pytest.approx(gh.norm().item(), rel=0.05)
    assert gh8[:7].abs().max().item() == 0.0  # ignored positions get no gradient


def test_a_frozen_head_gets_no_gradient_and_all_ignored_labels_give_zero():
    torch.manual_seed(1)
    hidden, weight = torch.randn(32, 16, requires_grad=True), torch.randn(64, 16)
    fp8_head_loss(hidden, weight, torch.randint(0, 64, (32,))).backward()
    assert weight.grad is None and hidden.grad.abs().sum() > 0
    hidden.grad = None
    loss = fp8_head_loss(hidden, weight, torch.full((32,), -100))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() == 0
