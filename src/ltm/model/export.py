"""`ltm export`: a trained checkpoint -> a Hugging Face folder anyone can load.

With every extra off, the folder declares `LlamaForCausalLM` (config, safetensors weights with
Llama's names), so plain `transformers.AutoModelForCausalLM` loads it without trust_remote_code,
as do vLLM and llama.cpp's converter. With extras on, it declares `LtmForCausalLM` and loads after
`import ltm.model`. Either way it carries the tokenizer (with its chat template) and a generation
config that names every end token (docs/serving.md).
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

from ltm.markup import END_OF_TURN
from ltm.io import atomic_dir
from ltm.model.config import LtmConfig
from ltm.model.modeling import LtmForCausalLM


class ExportError(ValueError):
    pass


def llama_config(config: LtmConfig) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim, hidden_act="silu",
        max_position_embeddings=config.max_position_embeddings, rope_theta=config.rope_theta, rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=config.tie_word_embeddings, attention_bias=False, mlp_bias=False,
        bos_token_id=getattr(config, "bos_token_id", None), eos_token_id=getattr(config, "eos_token_id", None),
        pad_token_id=getattr(config, "pad_token_id", None),
    )


def end_token_ids(tokenizer) -> list[int]:
    """Every token generation stops at: end of text, and the chat template's end of turn. Named in
    generation_config.json, so transformers' generate, vLLM and llama.cpp's converter stop at the end
    of an answer rather than at the token limit."""
    ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN) if END_OF_TURN in tokenizer.get_vocab() else None]
    return list(dict.fromkeys(i for i in ids if i is not None))


def load_checkpoint(checkpoint: str | Path, tokenizer: str | Path | None = None) -> tuple[LtmForCausalLM, object]:
    """The checkpoint's model and its tokenizer (the checkpoint's own unless `tokenizer` names a
    folder), checked to belong together; the model's config takes the tokenizer's special ids."""
    checkpoint = Path(checkpoint)
    tokenizer_dir = Path(tokenizer) if tokenizer else checkpoint
    if not (checkpoint / "config.json").exists():
        raise ExportError(f"{checkpoint}: no config.json; give a checkpoint folder or a run folder")
    if not (tokenizer_dir / "tokenizer.json").exists():
        raise ExportError(f"{tokenizer_dir}: no tokenizer.json; pass --tokenizer with the dataset's tokenizer folder")
    model = LtmForCausalLM.from_pretrained(str(checkpoint))
    hf_tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if len(hf_tokenizer) != model.config.vocab_size:
        raise ExportError(f"tokenizer has {len(hf_tokenizer)} tokens, the model {model.config.vocab_size}: they do not belong together")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.config, name, getattr(hf_tokenizer, name))
    return model, hf_tokenizer


def export(checkpoint: str | Path, out: str | Path, tokenizer: str | Path | None = None) -> str:
    """Write the HF folder `out`; return the architecture it declares."""
    model, hf_tokenizer = load_checkpoint(checkpoint, tokenizer)
    with atomic_dir(out) as tmp:
        if model.config.is_plain_llama:
            llama = LlamaForCausalLM(llama_config(model.config))
            missing, unexpected = llama.load_state_dict(model.state_dict(), strict=False)
            if unexpected or [k for k in missing if k != "lm_head.weight"]:
                raise ExportError(f"weights do not map onto Llama: missing {missing}, unexpected {unexpected}")
            llama.save_pretrained(str(tmp))
            architecture = "LlamaForCausalLM"
        else:
            model.save_pretrained(str(tmp))
            architecture = "LtmForCausalLM"
        hf_tokenizer.save_pretrained(str(tmp))
        GenerationConfig(bos_token_id=hf_tokenizer.bos_token_id, eos_token_id=end_token_ids(hf_tokenizer),
                         pad_token_id=hf_tokenizer.pad_token_id, do_sample=True, temperature=0.8, top_k=50,
                         max_new_tokens=model.config.max_position_embeddings // 2).save_pretrained(str(tmp))
    return architecture
