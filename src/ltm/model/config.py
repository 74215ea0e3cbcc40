"""LtmConfig: the model's hyperparameters, with Llama's field names so a model with every extra off
exports as a Llama one to one. Each scene-aware extra is a switch (see docs/model.md)."""

from __future__ import annotations

from transformers import PretrainedConfig

from ltm.markup import LENS_PREFIX

DEFAULT_CHANNELS = ("logician", "poet", "archetype", "ironist")
# Which lens of a pass each channel is nudged towards by the gate's auxiliary loss.
DEFAULT_CHANNEL_LENSES = {"logician": ["critic", "questions"], "poet": ["child", "paraphrase"],
                          "archetype": ["scene"], "ironist": ["commentary", "analogy"]}


class LtmConfig(PretrainedConfig):
    model_type = "ltm"

    def __init__(
        self,
        vocab_size: int = 4096,
        hidden_size: int = 256,
        intermediate_size: int | None = None,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        max_position_embeddings: int = 128,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        # Scene-state embeddings: ids of the marker tokens ("scene", "/scene", "header", "body",
        # "tension:low", "loop:claim", "lens:plain", ...); empty = off.
        scene_state: bool = False,
        scene_token_ids: dict[str, int] | None = None,
        # Soft-routed channels: 0 = off (one MLP per layer).
        channels: int = 0,
        channel_names: list[str] | None = None,
        channel_lenses: dict[str, list[str]] | None = None,
        channel_aux_weight: float = 0.0,
        # Self-loop: the middle `loop_core_layers` layers iterate; 0 = off.
        loop_core_layers: int = 0,
        loop_prelude_layers: int = 1,
        loop_max_steps: int = 4,
        loop_backprop_steps: int = 2,
        think_steps: int = 2,
        # Auxiliary losses.
        scene_aux_weight: float = 0.0,
        loop_aux_weight: float = 0.0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        # SwiGLU keeps the MLP's parameter count near a 4x GELU MLP: 8/3 d, rounded up to 32.
        self.intermediate_size = intermediate_size or 32 * -(-(8 * hidden_size // 3) // 32)
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.scene_state = scene_state
        self.scene_token_ids = dict(scene_token_ids or {})
        self.channels = channels
        self.channel_names = list(channel_names or DEFAULT_CHANNELS[: max(channels, 0)])
        self.channel_lenses = dict(channel_lenses if channel_lenses is not None else
                                   {k: v for k, v in DEFAULT_CHANNEL_LENSES.items() if k in self.channel_names})
        self.channel_aux_weight = channel_aux_weight
        self.loop_core_layers = loop_core_layers
        self.loop_prelude_layers = loop_prelude_layers
        self.loop_max_steps = loop_max_steps
        self.loop_backprop_steps = loop_backprop_steps
        self.think_steps = think_steps
        self.scene_aux_weight = scene_aux_weight
        self.loop_aux_weight = loop_aux_weight
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        self._check()

    def _check(self) -> None:
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("hidden_size must divide by num_attention_heads, and that by num_key_value_heads")
        if self.channels and len(self.channel_names) != self.channels:
            raise ValueError(f"channel_names has {len(self.channel_names)} names for {self.channels} channels")
        if self.loop_core_layers and self.loop_prelude_layers + self.loop_core_layers > self.num_hidden_layers:
            raise ValueError("loop_prelude_layers + loop_core_layers exceeds num_hidden_layers")
        if (self.scene_state or self.scene_aux_weight or self.channel_aux_weight) and not self.scene_token_ids:
            raise ValueError("scene-aware parts need scene_token_ids (the marker token ids from the tokenizer)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_plain_llama(self) -> bool:
        """Every extra off: the weights are a Llama model's, name for name."""
        return not (self.scene_state or self.channels > 1 or self.loop_core_layers or self.scene_aux_weight or self.loop_aux_weight)

    def describe_extras(self) -> str:
        parts = []
        if self.scene_state:
            parts.append("scene-state embeddings")
        if self.channels > 1:
            parts.append(f"{self.channels} channels ({', '.join(self.channel_names)})")
        if self.loop_core_layers:
            parts.append(f"self-loop (prelude {self.loop_prelude_layers}, core {self.loop_core_layers} x 1..{self.loop_max_steps}, "
                         f"think {self.think_steps})")
        weights = {"channel": self.channel_aux_weight, "scene": self.scene_aux_weight, "loop": self.loop_aux_weight}
        aux = [f"{name} {w}" for name, w in weights.items() if w]
        if aux:
            parts.append("aux losses " + ", ".join(aux))
        return "; ".join(parts) or "none (a plain Llama)"

    @property
    def lens_names(self) -> list[str]:
        return sorted(name.removeprefix(LENS_PREFIX) for name in self.scene_token_ids if name.startswith(LENS_PREFIX))
