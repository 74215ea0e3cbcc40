"""LtmConfig: the model's hyperparameters, with Llama's field names so a model with every extra off
exports as a Llama one to one. Each scene-aware extra is a switch (see docs/model.md)."""

from __future__ import annotations

from pydantic import ValidationError
from transformers import PretrainedConfig

from ltm.config import ModelConfig
from ltm.markup import LENS_PREFIX

DEFAULT_CHANNELS = ("logician", "poet", "archetype", "ironist")
# Which lens of a pass each channel is nudged towards by the gate's auxiliary loss.
DEFAULT_CHANNEL_LENSES = {"logician": ["critic", "questions"], "poet": ["child", "paraphrase"],
                          "archetype": ["scene"], "ironist": ["commentary", "analogy"]}


# The run config's names for the hyperparameters Llama names otherwise; the rest keep their names.
LLAMA_NAMES = {"d_model": "hidden_size", "d_ff": "intermediate_size", "n_layers": "num_hidden_layers",
               "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads",
               "max_seq_len": "max_position_embeddings", "tie_embeddings": "tie_word_embeddings"}


class LtmConfig(PretrainedConfig):
    """The model's hyperparameters are ltm.config.ModelConfig's, declared and checked there, stored
    under Llama's names (hidden_size, num_hidden_layers, ...) beside the few only a model has: the
    vocabulary size, the marker token ids the scene-aware parts read, the channels' lenses."""

    model_type = "ltm"

    def __init__(
        self,
        vocab_size: int = 4096,
        # Scene-state embeddings and the scene losses read these marker token ids ("scene", "/scene",
        # "header", "body", "tension:low", "loop:claim", "lens:plain", ...): ltm.markup.marker_ids.
        scene_token_ids: dict[str, int] | None = None,
        channel_lenses: dict[str, list[str]] | None = None,
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        given = {name: kwargs.pop(LLAMA_NAMES.get(name, name)) for name in ModelConfig.model_fields
                 if LLAMA_NAMES.get(name, name) in kwargs}
        try:
            shape = ModelConfig(**given)
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg']}" for e in exc.errors())) from None
        for name, value in shape.model_dump().items():
            setattr(self, LLAMA_NAMES.get(name, name), value)
        self.intermediate_size = shape.ffn_width
        self.channel_names = list(shape.channel_names or DEFAULT_CHANNELS[: max(shape.channels, 0)])
        self.channel_lenses = dict(channel_lenses if channel_lenses is not None else
                                   {k: v for k, v in DEFAULT_CHANNEL_LENSES.items() if k in self.channel_names})
        self.vocab_size = vocab_size
        self.scene_token_ids = dict(scene_token_ids or {})
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        super().__init__(tie_word_embeddings=shape.tie_embeddings, **kwargs)
        if (self.scene_state or self.scene_aux_weight or self.channel_aux_weight) and not self.scene_token_ids:
            raise ValueError("scene-aware parts need scene_token_ids (the marker token ids from the tokenizer)")

    @classmethod
    def from_run(cls, model: ModelConfig, vocab_size: int, scene_token_ids: dict[str, int]) -> "LtmConfig":
        """The model a run config's `model` section describes, for this tokenizer."""
        return cls(vocab_size=vocab_size, scene_token_ids=scene_token_ids,
                   **{LLAMA_NAMES.get(name, name): value for name, value in model.model_dump().items()})

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
