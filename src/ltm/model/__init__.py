"""The LTM model: a Llama-style decoder with switchable scene-aware parts, as a Hugging Face
config + model pair, registered with the Auto classes (importing ltm.model is enough for
`AutoModelForCausalLM.from_pretrained` to load an exported LTM folder)."""

from transformers import AutoConfig, AutoModelForCausalLM

from ltm.model.config import LtmConfig
from ltm.model.modeling import CausalOutput, LtmForCausalLM

AutoConfig.register("ltm", LtmConfig, exist_ok=True)
AutoModelForCausalLM.register(LtmConfig, LtmForCausalLM, exist_ok=True)

__all__ = ["CausalOutput", "LtmConfig", "LtmForCausalLM"]
