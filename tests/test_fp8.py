"""FP8 matrix products for training: close to the float product, gradients included, and a tiny
model trains with them as it does without (torch._scaled_mm runs on the CPU too)."""

import pytest
import torch
from torch import nn

from ltm.model import LtmConfig, LtmForCausalLM
from ltm.train.fp8 import FP8Linear, require_fp8, use_fp8


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_the_fp8_product_and_its_gradients_are_close_to_the_float_ones():
    torch.manual_seed(0)
    exact, fast = nn.Linear(64, 48, bias=False), nn.Linear(64, 48, bias=False)
    fast.load_state_dict(exact.state_dict())
    assert use_fp8(fast) == 1 and isinstance(fast, FP8Linear)
    x = torch.randn(4, 8, 64) * 3.0
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(4, 8, 48)
    y1, y2 = exact(x1), fast(x2)
    (y1 * grad).sum().backward()
    (y2 * grad).sum().backward()
    assert y2.shape == y1.shape and 1e-4 < relative(y2, y1) < 0.08  # really FP8 (not exact), and close
    assert relative(x2.grad, x1.grad) < 0.15 and relative(fast.weight.grad, exact.weight.grad) < 0.15
    fast.eval()
    assert torch.equal(fast(x), exact(x))  # evaluation keeps the plain product


def train(fp8: bool) -> list[float]:
    torch.manual_seed(0)
    config = LtmConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=128, max_position_embeddings=32, tie_word_embeddings=True)
    model = LtmForCausalLM(config).train()
    if fp8:
        assert use_fp8(model) == 2 * 7 + 1  # 7 products per layer and the (tied) head
        assert model.lm_head.weight is model.model.embed_tokens.weight
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = torch.arange(64).repeat(9)[: 33 * 16].view(16, 33)  # a pattern a model learns fast
    losses = []
    for _ in range(40):
        loss = model(data[:, :-1], data[:, 1:]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_a_tiny_model_learns_as_well_with_fp8_products():
    plain, fp8 = train(False), train(True)
    assert fp8[-1] < 0.3 * fp8[0]  # it learns
    assert abs(fp8[-1] - plain[-1]) < 0.1 * plain[0]  # and ends where the float products end, within 10% of the start
    assert fp8 != plain


def test_fp8_is_refused_without_fp8_tensor_cores():
    with pytest.raises(ValueError, match="compute capability 8.9"):
        require_fp8(torch.device("cpu"))
