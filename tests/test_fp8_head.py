"""The FP8 output projection + cross-entropy (train.fp8_head) against the exact computation, on the CPU."""

import pytest
import torch
import torch.nn.functional as F

from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.fp8_head import fp8_head_loss


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


def _both(hidden, weight, labels, upstream: float = 2.5):
    """(loss, grad hidden, grad weight) through FP8, then exactly; `upstream` is the gradient that
    reaches the loss (other than 1, and negative, it checks the scale the backward pass applies)."""
    out = []
    exact = lambda h, w: F.cross_entropy((h @ w.t()).reshape(-1, w.shape[0]), labels.reshape(-1), ignore_index=-100)  # noqa: E731
    for fn in (lambda h, w: fp8_head_loss(h, w, labels), exact):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        loss = fn(h, w)
        (upstream * loss).backward()
        out.append((loss.item(), h.grad, w.grad))
    return out


@pytest.mark.parametrize("upstream", [2.5, -1.5])
def test_loss_and_gradients_follow_the_exact_computation(upstream):
    torch.manual_seed(0)
    hidden, weight = torch.randn(96, 48), 0.2 * torch.randn(160, 48)
    labels = torch.randint(0, 160, (96,))
    labels[:7] = -100
    (loss8, gh8, gw8), (loss, gh, gw) = _both(hidden, weight, labels, upstream)
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


def test_a_token_count_that_is_not_a_multiple_of_16_is_padded_for_the_gpu_kernels(monkeypatch):
    real = torch._scaled_mm
    sides = []

    def checked(a, b, **kwargs):
        sides.extend([*a.shape, *b.shape])
        return real(a, b, **kwargs)

    monkeypatch.setattr(torch, "_scaled_mm", checked)
    torch.manual_seed(2)
    hidden, weight = torch.randn(5, 20, 32), 0.2 * torch.randn(48, 32)  # 100 tokens
    labels = torch.randint(0, 48, (5, 20))
    (loss8, gh8, _), (loss, gh, _) = _both(hidden, weight, labels)
    assert sides and all(side % 16 == 0 for side in sides)
    assert loss8 == pytest.approx(loss, rel=0.01) and gh8.shape == (5, 20, 32) and _cos(gh8, gh) > 0.99


def test_a_head_wrapped_by_lora_keeps_its_own_forward():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    model = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=2)).train()
    get_peft_model(model, LoraConfig(r=2, target_modules=["lm_head"], init_lora_weights=False))  # wraps model.lm_head in place
    x = torch.randint(0, 64, (2, 17))
    losses = []
    for fp8 in (False, True):
        model.fp8_head = fp8
        losses.append(model(x[:, :-1], x[:, 1:], return_logits=False).loss.item())
    assert losses[0] == losses[1]  # the adapter's product, not the FP8 one over the bare base weight
