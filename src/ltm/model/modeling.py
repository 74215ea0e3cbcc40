"""The LTM model: a Llama-style decoder, readable top to bottom, with scene-aware parts that are each
a switch in LtmConfig (docs/model.md):

- scene-state embeddings added to the token embeddings (scene_state.py);
- soft-routed channel MLPs instead of one MLP per layer (layers.ChannelMLP);
- a self-loop: prelude layers, a core block iterated r times with the prelude's output re-injected
  at every step, coda layers (as recurrent-depth models do); r is drawn at random in training, with
  gradients through the last `loop_backprop_steps` steps only, and chosen at inference (think_steps);
- auxiliary losses: channel gate vs the pass's lens, scene consistency (tension and lens predicted
  from hidden states), loop convergence (change between the last two loop states).
With every extra off it is a Llama model, parameter for parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ltm.model.cache import KVCache
from ltm.model.config import LtmConfig
from ltm.model.fp8_head import fp8_head_loss
from ltm.model.layers import ChannelMLP, DecoderLayer, RMSNorm, indexed, rope_tables
from ltm.model.scene_state import SceneStateEmbedding, SceneStates


IGNORE_INDEX = -100  # a target that is read but not learned (the loss mask; cross-entropy's default)


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labels that are not IGNORE_INDEX; 0 (with a graph) when every
    label is, where the mean would be 0/0: a window inside a masked turn."""
    summed = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    return summed / (labels != IGNORE_INDEX).sum().clamp(min=1)


@dataclass
class CausalOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # each part of the loss, detached, for the logs


class LtmPreTrainedModel(PreTrainedModel):
    config_class = LtmConfig
    base_model_prefix = "model"

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Embedding) and getattr(module, "zero_init", False):
            nn.init.zeros_(module.weight)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class LtmModel(LtmPreTrainedModel):
    def __init__(self, config: LtmConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        needs_states = config.scene_state or config.scene_aux_weight or config.channel_aux_weight
        self.scene_states = SceneStates(config) if needs_states else None
        self.scene_embedding = SceneStateEmbedding(config, self.scene_states.sizes) if config.scene_state else None
        # RoPE tables live outside the state dict: from_pretrained builds modules on the meta device
        # and would leave non-persistent buffers uninitialised, so they are made on first use.
        self._rope: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        # Training's choice (train.speed.residual_dtype), not the model's: under autocast, carry the
        # residual stream in the autocast dtype rather than in the fp32 of the embeddings.
        self.autocast_residual = False
        self.post_init()

    def rope(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        device = indexed(device)
        if device not in self._rope:
            self._rope[device] = rope_tables(self.config, device)
        return self._rope[device]

    def prepare(self, device: torch.device) -> None:
        """Make the derived tables (RoPE, scene-state lookups) for `device` now: made on first use
        inside a CUDA graph, a table would be overwritten by the graph's next replay."""
        self.rope(device)
        if self.scene_states is not None:
            self.scene_states.tables(device)

    def loop_steps(self, think_steps: int | None) -> int:
        if think_steps is not None:
            return think_steps
        if self.training:
            return self._draw_loop_steps()
        return self.config.think_steps

    @torch.compiler.disable  # drawn eagerly: the same generator and values, compiled or not
    def _draw_loop_steps(self) -> int:
        return int(torch.randint(1, self.config.loop_max_steps + 1, (1,)).item())

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None, think_steps: int | None = None):
        """Hidden states (after the final norm), the scene states, and the loop's last change."""
        c = self.config
        t = input_ids.shape[1]
        if cache is None:
            if t > c.max_position_embeddings:
                raise ValueError(f"sequence of {t} tokens exceeds max_position_embeddings={c.max_position_embeddings}")
            positions = slice(0, t)
        else:
            positions = cache.positions(t, c.max_position_embeddings, input_ids.device)
        x = self.embed_tokens(input_ids)
        if self.autocast_residual and torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        states = None
        if self.scene_states is not None:
            history, where = (input_ids, None) if cache is None else cache.history(input_ids)
            full = self.scene_states(history)
            states = {k: v[:, -t:] if where is None else v.gather(1, where) for k, v in full.items()}
        if self.scene_embedding is not None:
            x = x + self.scene_embedding(states).to(x.dtype)
        cos, sin = (table[positions].to(x.dtype) for table in self.rope(x.device))
        if cos.dim() == 3:  # a position per row (static cache): broadcast over the heads
            cos, sin = cos[:, None], sin[:, None]
        loop_delta = None
        if not c.loop_core_layers:
            for i, layer in enumerate(self.layers):
                x = layer(x, cos, sin, cache, (i, 0))
        else:
            x, loop_delta = self._looped(x, cos, sin, cache, self.loop_steps(think_steps))
        if cache is not None:
            cache.advance(t)
        return self.norm(x), states, loop_delta

    def _looped(self, x, cos, sin, cache, steps: int):
        c = self.config
        first_core, first_coda = c.loop_prelude_layers, c.loop_prelude_layers + c.loop_core_layers
        for i in range(first_core):
            x = self.layers[i](x, cos, sin, cache, (i, 0))
        injected, state, previous = x, torch.zeros_like(x), None
        for step in range(steps):
            # Truncated backpropagation: only the last steps build a graph.
            with torch.set_grad_enabled(torch.is_grad_enabled() and step >= steps - c.loop_backprop_steps):
                h = state + injected
                for i in range(first_core, first_coda):
                    h = self.layers[i](h, cos, sin, cache, (i, step))
                previous, state = state, h
        delta = None
        if steps > 1:
            delta = (state - previous).float().pow(2).mean() / state.float().pow(2).mean().clamp(min=1e-6)
        x = state
        for i in range(first_coda, c.num_hidden_layers):
            x = self.layers[i](x, cos, sin, cache, (i, 0))
        return x, delta


class LtmForCausalLM(LtmPreTrainedModel):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LtmConfig):
        super().__init__(config)
        self.model = LtmModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.scene_aux_weight:
            self.tension_head = nn.Linear(config.hidden_size, 4, bias=False)
            self.lens_head = nn.Linear(config.hidden_size, len(config.lens_names) + 1, bias=False)
        self.fp8_head = False  # train.speed.fp8_head: the training loss's output projection in FP8 (fp8_head.py)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, cache: KVCache | None = None,
                think_steps: int | None = None, return_logits: bool = True) -> CausalOutput:
        """Logits; with labels, the loss: cross-entropy over labels that are not IGNORE_INDEX, plus each
        enabled auxiliary loss times its weight. Training passes return_logits=False, so the
        (batch x context x vocabulary) logits need not outlive the loss."""
        hidden, states, loop_delta = self.model(input_ids, cache, think_steps)
        # A head wrapped by peft (LoRA on lm_head) keeps its own forward.
        if labels is not None and self.fp8_head and self.training and not return_logits and type(self.lm_head) is nn.Linear:
            logits, lm = None, fp8_head_loss(hidden, self.lm_head.weight, labels, IGNORE_INDEX)
        else:
            logits = self.lm_head(hidden)
            if labels is None:
                return CausalOutput(logits)
            lm = token_loss(logits, labels)
        # Parts stay tensors: a .item() here would stall the GPU at every step, and under
        # torch.compile break the graph.
        loss, parts = lm, {"lm": lm.detach()}
        c = self.config
        if c.channel_aux_weight:
            aux = self._channel_loss(states)
            loss, parts["channel"] = loss + c.channel_aux_weight * aux, aux.detach()
        if c.scene_aux_weight:
            aux = self._scene_loss(hidden, states)
            loss, parts["scene"] = loss + c.scene_aux_weight * aux, aux.detach()
        if c.loop_aux_weight and loop_delta is not None:
            loss, parts["loop"] = loss + c.loop_aux_weight * loop_delta, loop_delta.detach()
        return CausalOutput(logits if return_logits else None, loss, parts)

    def _channel_loss(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the gates (averaged over layers) against the channel the pass's lens maps to."""
        gates = [m.last_gate for m in self.modules() if isinstance(m, ChannelMLP) and m.last_gate is not None]
        if not gates:
            return torch.zeros((), device=states["lens"].device)
        probs = torch.stack(gates).float().mean(0)
        target_of_lens = torch.full((len(self.config.lens_names) + 1,), -100, dtype=torch.long, device=probs.device)
        for channel, name in enumerate(self.config.channel_names):
            for lens in self.config.channel_lenses.get(name, []):
                if lens in self.config.lens_names:
                    target_of_lens[self.config.lens_names.index(lens) + 1] = channel
        target = target_of_lens[states["lens"]].reshape(-1)
        # Means over the counted tokens without a branch on their number: a data-dependent `if` would
        # split the compiled graph (and its CUDA graph); with none counted the loss is a zero with a graph.
        counted = target >= 0
        nll = F.nll_loss(probs.clamp(min=1e-9).log().view(-1, probs.shape[-1]), target.clamp(min=0), reduction="none")
        return (nll * counted).sum() / counted.sum().clamp(min=1)

    def _scene_loss(self, hidden: torch.Tensor, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predict the scene's tension level and lens from the hidden state of every body token."""
        body = (states["region"] == 3).reshape(-1)
        h = hidden.reshape(-1, hidden.shape[-1]).float()
        each = F.cross_entropy(self.tension_head(h).float(), states["tension"].reshape(-1), reduction="none") + F.cross_entropy(
            self.lens_head(h).float(), states["lens"].reshape(-1), reduction="none")
        return (each * body).sum() / body.sum().clamp(min=1)

    @torch.no_grad()
    def generate_ids(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
                     eos_token_id: int | None = None, think_steps: int | None = None, use_cache: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Greedy (temperature 0) or sampled continuation; returns only the new tokens (B, n). Stops
        at eos (for every row), after max_new_tokens, or when the context is full."""
        self.eval()
        cache = KVCache() if use_cache else None
        ids = input_ids
        new: list[torch.Tensor] = []
        logits = self(ids, cache=cache, think_steps=think_steps).logits[:, -1]
        finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            token = _pick(logits, temperature, top_k, generator)
            if eos_token_id is not None:
                token = torch.where(finished, torch.full_like(token, eos_token_id), token)
                finished |= token == eos_token_id
            new.append(token)
            if finished.all() or ids.shape[1] + len(new) >= self.config.max_position_embeddings:
                break
            if cache is not None:
                logits = self(token[:, None], cache=cache, think_steps=think_steps).logits[:, -1]
            else:
                logits = self(torch.cat([ids, torch.stack(new, 1)], 1), think_steps=think_steps).logits[:, -1]
        return torch.stack(new, 1) if new else ids[:, :0]

    def non_embedding_parameters(self) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 2N forward and 4N backward plus attention, as in the PaLM paper's
        appendix (6N + 12·L·d·T for a plain stack). The loop's core runs forward at its mean number of
        steps in training, backward only through the last loop_backprop_steps of them."""
        c = self.config
        per_layer = sum(p.numel() for p in self.model.layers[0].parameters())
        forward = backward = float(c.num_hidden_layers)  # layer runs per token
        if c.loop_core_layers:
            steps = range(1, c.loop_max_steps + 1)
            forward += c.loop_core_layers * (sum(steps) / len(steps) - 1)
            backward += c.loop_core_layers * (sum(min(r, c.loop_backprop_steps) for r in steps) / len(steps) - 1)
        head = c.vocab_size * c.hidden_size  # the output projection is a matmul
        return (2 * (per_layer * forward + head) + 4 * (per_layer * backward + head)
                + (4 * forward + 8 * backward) * c.hidden_size * seq_len)


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
