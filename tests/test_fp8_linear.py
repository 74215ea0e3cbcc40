"""The decoder's FP8 products (train.fp8_body) against the exact computation, on the CPU."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.fp8_linear import FP8Linear, to_fp8, use_fp8_linears


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


def test_rowwise_scales_fit_each_row_to_the_format():
    t = torch.tensor([[1.0, -2.0, 0.5], [0.001, 0.002, -0.004]])
    t8, inv = to_fp8(t, torch.float8_e4m3fn, rowwise=True)
    assert inv.shape == (2, 1)
    assert t8.float().abs().amax(dim=1).tolist() == [448.0, 448.0]  # each row's largest meets e4m3's largest
    assert torch.allclose(t8.float() * inv, t, rtol=0.07)  # a tiny row keeps its precision


@pytest.mark.parametrize("tokens", [48, 37])  # 37: padded to 48 for the GPU kernels, and cut back
def test_output_and_gradients_follow_the_exact_product(tokens):
    torch.manual_seed(0)
    # Rows of very different sizes: a single scale for the whole tensor would flush the small ones.
    x = torch.randn(2, tokens, 64) * torch.logspace(-5, 1, tokens)[None, :, None]
    weight, upstream = 0.1 * torch.randn(96, 64), torch.randn(2, tokens, 96)
    fp8 = FP8Linear(64, 96, bias=False)
    plain = nn.Linear(64, 96, bias=False)
    out = {}
    for name, layer in (("fp8", fp8), ("exact", plain)):
        layer.weight.data.copy_(weight)
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (y * upstream).sum().backward()
        out[name] = y.detach(), xi.grad, layer.weight.grad
    (y8, gx8, gw8), (y, gx, gw) = out["fp8"], out["exact"]
    assert y8.shape == y.shape and gx8.shape == gx.shape
    assert _cos(y8, y) > 0.999 and _cos(gx8, gx) > 0.999
    assert torch.equal(gw8, gw)  # the weight's gradient is not an FP8 product
    # Every token's output, the smallest (a millionth of the largest) too, within e4m3's precision.
    row_error = (y8 - y).norm(dim=-1) / y.norm(dim=-1)
    assert row_error.max().item() < 0.1
    assert not torch.equal(y8, y)  # it did run through FP8


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
