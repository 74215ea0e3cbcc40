"""What `fit` needs from a model, for models that are not a bare LtmForCausalLM: an LtmForCausalLM
wrapped in peft's LoRA, or any Hugging Face causal LM (LoRA or every parameter).

`fit` calls forward(x, y, return_logits) -> .loss/.losses on targets that are already shifted, the counting
methods (num_parameters, non_embedding_parameters, flops_per_token), config.describe_extras() and
the config's sizes (for the memory estimate), and save_pretrained(folder, state_dict=...) for its
checkpoints. `Trainable` exposes exactly those and delegates the rest to the wrapped model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from ltm.config import InitiationConfig
from ltm.model.modeling import CausalOutput, LtmForCausalLM, token_loss
from ltm.train.loop import TrainError


@dataclass(frozen=True)
class ConfigView:
    """The config fields `fit` reads, whatever the architecture names them (GPT-2's n_embd is
    hidden_size through transformers' attribute map)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    extras: str

    def describe_extras(self) -> str:
        return self.extras


class Trainable(nn.Module):
    """`model` (a PreTrainedModel, or a PeftModel around one) as `fit` trains it."""

    def __init__(self, model: PreTrainedModel | PeftModel, extras: str):
        super().__init__()
        self.inner = model
        c = self.base.config
        self.config = ConfigView(c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.vocab_size, extras)

    @property
    def base(self) -> PreTrainedModel:
        """The transformers model (with the LoRA layers peft put into it, if any)."""
        return self.inner.get_base_model() if isinstance(self.inner, PeftModel) else self.inner

    def forward(self, x: torch.Tensor, y: torch.Tensor, return_logits: bool = True) -> CausalOutput:
        if isinstance(self.base, LtmForCausalLM):
            # Our model scores already-shifted labels itself, auxiliary losses included.
            return self.inner(x, y, return_logits=return_logits)
        # A Hugging Face model would shift `labels` once more: score the logits against y here.
        logits = self.inner(input_ids=x, use_cache=False).logits
        loss = token_loss(logits, y)
        return CausalOutput(logits if return_logits else None, loss, {"lm": loss.detach()})

    def num_parameters(self) -> int:
        return self.base.num_parameters()

    def non_embedding_parameters(self) -> int:
        return self.base.num_parameters(exclude_embeddings=True)

    def flops_per_token(self, seq_len: int) -> float:
        if isinstance(self.base, LtmForCausalLM):
            return self.base.flops_per_token(seq_len)
        # 6N + attention, as LtmForCausalLM counts; the output projection is a matmul, the input embedding a lookup.
        c = self.config
        return 6 * (self.non_embedding_parameters() + c.vocab_size * c.hidden_size) + 12 * c.num_hidden_layers * c.hidden_size * seq_len

    def save_pretrained(self, folder: str | Path, state_dict: dict | None = None) -> None:
        """Under LoRA peft writes the adapter alone; otherwise the whole model."""
        if state_dict is not None:
            state_dict = {key.removeprefix("inner."): value for key, value in state_dict.items()}
        self.inner.save_pretrained(str(folder), state_dict=state_dict)


def with_lora(model: PreTrainedModel, initiation: InitiationConfig) -> PeftModel:
    """LoRA adapters on `model`, every base weight frozen. The targets are the configured module
    names the model has; when it has none of them (GPT-2's c_attn, ...), peft's default for its
    architecture."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in initiation.target_modules if t in names] or None
    config = LoraConfig(r=initiation.lora_r, lora_alpha=initiation.lora_alpha, lora_dropout=initiation.lora_dropout,
                        target_modules=targets)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise TrainError(f"LoRA on {type(model).__name__}: {exc}; name its linear layers in initiation.target_modules") from None


def describe_lora(peft_model: PeftModel) -> str:
    config = peft_model.peft_config["default"]
    trainable, total = peft_model.get_nb_trainable_parameters()
    return (f"LoRA r={config.r}, alpha={config.lora_alpha} on {', '.join(sorted(config.target_modules))}: "
            f"{trainable:,} of {total:,} parameters trained, the base frozen")
