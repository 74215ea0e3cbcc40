"""`ltm export RUN --format gguf`: a plain-Llama checkpoint -> one GGUF file for llama.cpp (and
Ollama, LM Studio, llama-cpp-python), written with the `gguf` package (`pip install 'ltm[gguf]'`).

The layout is what llama.cpp's own converter writes for a Hugging Face Llama: llama.* metadata,
tensors under GGUF names, and the query and key projections permuted from Hugging Face's rotary
layout (halves) to GGML's (interleaved pairs). The tokenizer goes in as a GPT-2-style byte-level
BPE (`tokenizer.ggml.model` "gpt2") with the GPT-2 pre-tokenizer (`tokenizer.ggml.pre` "gpt-2"),
which is what ltm's tokenizer is: a ByteLevel pre-tokenizer with GPT-2's split pattern. Marker
tokens are control tokens; `<|end|>` is the end-of-turn token, so a chat stops at the end of its turn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ltm.markup import END_OF_TURN
from ltm.io import atomic_path
from ltm.model.export import ExportError, load_checkpoint

DTYPES = ("f32", "f16")  # f16: the matrices in half precision, the norms in f32 (llama.cpp's "mostly f16")


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's rotary layout (each head's first half, then its second) -> GGML's (pairs)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _merges(tokenizer_json: dict) -> list[str]:
    """BPE merges as "a b" lines; tokenizer.json holds them as such lines or as [a, b] pairs."""
    return [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]


def export_gguf(checkpoint: str | Path, out: str | Path, tokenizer: str | Path | None = None, dtype: str = "f16") -> Path:
    """Write the GGUF file `out` for a plain-Llama checkpoint; return its path."""
    try:
        import gguf
    except ImportError:
        raise ExportError("--format gguf needs the gguf package: pip install 'ltm[gguf]'") from None
    if dtype not in DTYPES:
        raise ExportError(f"GGUF dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    model, hf_tokenizer = load_checkpoint(checkpoint, tokenizer)
    c = model.config
    if not c.is_plain_llama:
        raise ExportError(f"{checkpoint}: GGUF export is for plain-Llama models; this one has scene-aware extras on "
                          f"({c.describe_extras()}), which llama.cpp does not run: export it as a Hugging Face folder")
    tokenizer_json = json.loads(hf_tokenizer.backend_tokenizer.to_str())
    if tokenizer_json["model"]["type"] != "BPE" or (tokenizer_json.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise ExportError("GGUF export writes a byte-level BPE tokenizer (GPT-2 style); this tokenizer is not one")

    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(Path(checkpoint).resolve().parent.name if Path(checkpoint).name == "checkpoint" else Path(checkpoint).name)
    shape = {"context_length": c.max_position_embeddings, "embedding_length": c.hidden_size, "block_count": c.num_hidden_layers,
             "feed_forward_length": c.intermediate_size, "head_count": c.num_attention_heads, "head_count_kv": c.num_key_value_heads,
             "key_length": c.head_dim, "value_length": c.head_dim, "rope_dimension_count": c.head_dim, "rope_freq_base": c.rope_theta,
             "layer_norm_rms_eps": c.rms_norm_eps, "vocab_size": c.vocab_size}
    for key, value in shape.items():
        getattr(writer, f"add_{key}")(value)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    special = set(hf_tokenizer.all_special_ids) | {i for i, t in hf_tokenizer.added_tokens_decoder.items() if t.special}
    writer.add_token_list(hf_tokenizer.convert_ids_to_tokens(list(range(c.vocab_size))))
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(c.vocab_size)])
    writer.add_token_merges(_merges(tokenizer_json))
    writer.add_bos_token_id(hf_tokenizer.bos_token_id)
    writer.add_eos_token_id(hf_tokenizer.eos_token_id)
    if hf_tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(hf_tokenizer.pad_token_id)
    if END_OF_TURN in hf_tokenizer.get_vocab():
        writer.add_eot_token_id(hf_tokenizer.convert_tokens_to_ids(END_OF_TURN))
    writer.add_add_bos_token(True)  # ltm's models read a bos token first, as `ltm serve` gives them
    writer.add_add_eos_token(False)
    if hf_tokenizer.chat_template:
        writer.add_chat_template(hf_tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd when there is no output.weight
        weight = tensor.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            weight = _permute(weight, c.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            weight = _permute(weight, c.num_key_value_heads)
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ExportError(f"{name}: no GGUF name for this tensor; is the model a plain Llama?")
        writer.add_tensor(target, weight.astype(np.float16 if dtype == "f16" and weight.ndim > 1 else np.float32))

    with atomic_path(out) as tmp:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out)
