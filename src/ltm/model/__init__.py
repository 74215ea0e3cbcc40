"""The LTM model: a Llama-style decoder as a Hugging Face config + model pair."""

from ltm.model.config import LtmConfig
from ltm.model.llama import LtmForCausalLM

__all__ = ["LtmConfig", "LtmForCausalLM"]
