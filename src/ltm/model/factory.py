"""Making the model: a new one from the run config's `model` section (pretraining, and evaluation's
untrained reference), or the one a folder holds (resuming, the initiation stage, evaluation,
serving); and the device it runs on. Every stage gets its model here."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from ltm.config import ModelConfig
from ltm.markup import marker_ids
from ltm.model.config import LtmConfig
from ltm.model.modeling import LtmForCausalLM


def pick_device(choice: str = "auto", index: int = 0) -> torch.device:
    """`auto`: GPU `index` when torch sees a GPU, else the CPU; `cuda` without a GPU is refused."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but torch sees no CUDA device")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", index)
    return torch.device("cpu")


def new_model(model: ModelConfig, tokenizer, seed: int) -> LtmForCausalLM:
    """The model at initialisation; the same seed always gives the same weights (the untrained reference)."""
    torch.manual_seed(seed)
    return LtmForCausalLM(LtmConfig.from_run(model, len(tokenizer), marker_ids(tokenizer)))


def load_model(folder: str | Path) -> LtmForCausalLM:
    """The model in a checkpoint or an `ltm export` folder; a plain-Llama export is moved into our
    class, whose decoding takes the static KV cache."""
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    return loaded if isinstance(loaded, LtmForCausalLM) else from_llama(loaded)


def from_llama(llama: LlamaForCausalLM) -> LtmForCausalLM:
    """The inverse of the plain export: a Llama model as an LtmForCausalLM with the same weights."""
    c = llama.config
    rope_theta = getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]
    model = LtmForCausalLM(LtmConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        max_position_embeddings=c.max_position_embeddings, rope_theta=rope_theta, rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_word_embeddings))
    model.load_state_dict(llama.state_dict(), strict=False)
    return model
