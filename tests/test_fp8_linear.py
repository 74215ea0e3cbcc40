"""The decoder's FP8 products with fixed scales (train.fp8_body) against the exact computation, on the CPU."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.fp8_linear import FP8Linear, use_fp8_linears


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


def _both(x: torch.Tensor, weight: torch.Tensor, upstream: torch.Tensor, fp8_weight_grad: bool = False):
    """(output, input gradient, weight gradient) through an FP8Linear, then through nn.Linear in fp32."""
    out = []
    fast = FP8Linear(weight.shape[1], weight.shape[0], bias=False)
    fast.fp8_weight_grad = fp8_weight_grad
    for layer in (fast, nn.Linear(weight.shape[1], weight.shape[0], bias=False)):
        layer.weight.data.copy_(weight)
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (y * upstream).sum().backward()
        out.append((y.detach(), xi.grad, layer.weight.grad))
    return out


@pytest.mark.parametrize("tokens", [48, 37])  # 37: padded to 48 for the GPU kernels, and cut back
def test_output_and_gradients_follow_the_exact_product(tokens):
    torch.manual_seed(0)
    x, weight, upstream = torch.randn(2, tokens, 64), 0.05 * torch.randn(96, 64), torch.randn(2, tokens, 96)
    (y8, gx8, gw8), (y, gx, gw) = _both(x, weight, upstream)
    assert y8.shape == y.shape and gx8.shape == gx.shape and gw8.shape == gw.shape
    assert _cos(y8, y) > 0.998 and _cos(gx8, gx) > 0.995 and _cos(gw8, gw) > 0.999
    assert not torch.equal(y8, y)  # it did run through FP8


def test_the_weight_gradient_in_fp8_follows_the_exact_one_less_closely_than_the_bf16_product():
    torch.manual_seed(0)
    x, weight, upstream = torch.randn(2, 37, 64), 0.05 * torch.randn(96, 64), torch.randn(2, 37, 96) / 74
    (_, gx_bf16, gw_bf16), _ = _both(x, weight, upstream)
    (_, gx8, gw8), (_, gx, gw) = _both(x, weight, upstream, fp8_weight_grad=True)
    assert torch.equal(gx8, gx_bf16)  # the input's gradient is the same product either way
    assert 0.995 < _cos(gw8, gw) < _cos(gw_bf16, gw)
    assert (gw8 - gw).norm() / gw.norm() < 0.1  # the scale too: a cosine does not see it


def test_a_mean_loss_over_many_tokens_keeps_its_small_gradients():
    """Per-token gradients of a mean over n tokens are of order 1/n, below e5m2's smallest numbers
    (1.5e-5) for n in the thousands: the backward pass scales them by n before the cast."""
    torch.manual_seed(1)
    tokens = 4096
    x, weight = torch.randn(tokens, 64), 0.05 * torch.randn(32, 64)
    upstream = torch.randn(tokens, 32) / (tokens * 50)  # about 5e-6
    (_, gx8, _), (_, gx, _) = _both(x, weight, upstream)
    assert _cos(gx8, gx) > 0.995


def test_large_inputs_and_gradients_saturate_instead_of_turning_into_inf():
    layer = FP8Linear(16, 16, bias=False)
    layer.weight.data.copy_(torch.eye(16))
    x = torch.full((16, 16), 1000.0, requires_grad=True)
    y = layer(x)
    (y * 1e5).sum().backward()  # times 16 tokens: beyond e5m2's largest, 57,344
    assert torch.isfinite(y).all() and y.max().item() == pytest.approx(448, rel=0.01)
    assert torch.isfinite(x.grad).all() and x.grad.max().item() == pytest.approx(57344 / 16, rel=0.01)


def test_evaluation_keeps_the_plain_product_and_a_frozen_weight_gets_no_gradient():
    torch.manual_seed(1)
    layer = FP8Linear(32, 16, bias=False)
    x = torch.randn(16, 32)
    layer.eval()
    assert torch.equal(layer(x), x @ layer.weight.t())
    layer.train()
    layer.weight.requires_grad_(False)
    xi = x.clone().requires_grad_()
    layer(xi).sum().backward()
    assert layer.weight.grad is None and xi.grad.abs().sum() > 0


def test_the_model_trains_with_fp8_products_and_odd_sides_keep_bf16():
    config = LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                       intermediate_size=64, max_position_embeddings=32, channels=2)
    torch.manual_seed(0)
    model = LtmForCausalLM(config).train()
    weights_before = [id(p) for p in model.parameters()]
    turned, kept = use_fp8_linears(model.model.layers)
    # Per layer: q, k, v, o and two channels of gate, up, down; the routing gate (2 outputs) stays.
    assert (turned, kept) == (2 * (4 + 2 * 3), 2)
    assert [id(p) for p in model.parameters()] == weights_before
    assert type(model.lm_head) is nn.Linear
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 64, (4, 16))
    losses = []
    for _ in range(8):
        loss = model(ids, labels=ids, return_logits=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3


def test_under_lora_the_frozen_products_run_in_fp8_and_the_adapters_do_not():
    from ltm.config import InitiationConfig
    from ltm.train.adapters import with_lora

    config = LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                       intermediate_size=64, max_position_embeddings=32)
    lora = with_lora(LtmForCausalLM(config), InitiationConfig(mode="lora", lora_r=16))  # r = 16: adapters FP8 could take
    turned, kept = use_fp8_linears(lora.get_base_model().model.layers)
    adapters = [m for name, m in lora.named_modules() if name.rsplit(".", 2)[-2:-1] in (["lora_A"], ["lora_B"])]
    assert adapters and all(type(m) is nn.Linear for m in adapters)
    assert turned == sum(type(m) is FP8Linear for m in lora.modules()) > 0 and kept == 0
