"""The decoder's parts: RMSNorm, rotary positions, grouped-query attention through SDPA (with a KV
cache), the SwiGLU MLP, and the soft-routed channel MLP. Parameter names follow transformers'
Llama, so a model without extras is a Llama checkpoint."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ltm.model.cache import KVCache
from ltm.model.config import LtmConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


def indexed(device: torch.device) -> torch.device:
    """`cuda` as `cuda:N` (the current device), the form tensors report: tables made ahead for a
    device are then found under the key the forward pass looks up."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def rope_tables(config: LtmConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (max_positions, head_dim) in Llama's half-rotation layout."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    angles = torch.outer(torch.arange(config.max_position_embeddings, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: LtmConfig):
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        d = config.hidden_size
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                slot: tuple[int, int] = (0, 0)) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask = None
        if cache is not None:
            k, v, mask = cache.extend(slot, k, v)
        gqa = self.n_kv != self.n_heads
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ChannelMLP(nn.Module):
    """K SwiGLU channels mixed by a per-token softmax gate. The gate reads only the token's own
    hidden state, so the mixture is causal by construction. Each channel is 1/K of the plain MLP's
    width: the parameter count matches a plain MLP (plus the gate)."""

    def __init__(self, config: LtmConfig):
        super().__init__()
        inner = max(config.intermediate_size // config.channels, 1)
        self.channels = nn.ModuleList(MLP(config.hidden_size, inner) for _ in range(config.channels))
        self.gate = nn.Linear(config.hidden_size, config.channels, bias=False)
        self.last_gate: torch.Tensor | None = None  # (B, T, K) probabilities, for the auxiliary loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.gate(x).float(), dim=-1).to(x.dtype)
        self.last_gate = probs
        return sum(probs[..., k : k + 1] * channel(x) for k, channel in enumerate(self.channels))


class DecoderLayer(nn.Module):
    def __init__(self, config: LtmConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = ChannelMLP(config) if config.channels > 1 else MLP(config.hidden_size, config.intermediate_size)

    def forward(self, x, cos, sin, cache: KVCache | None = None, slot: tuple[int, int] = (0, 0)) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, slot)
        return x + self.mlp(self.post_attention_layernorm(x))
