"""`ltm export RUN --format gguf`: the file's metadata and tokenizer, and llama.cpp (through
llama-cpp-python) generating the same greedy tokens as transformers on the tests' tiny model."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ltm.cli import main
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.export import ExportError
from ltm.model.gguf import export_gguf

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'ltm[gguf]')")

TEXT = "THEON: Can a thing be measured? — ФЕОН: Помним ли мы прошлое… 42 %"


@pytest.fixture(scope="module")
def files(exported, tmp_path_factory):
    """The tiny run exported as GGUF in f32 and f16, by the command line."""
    out = tmp_path_factory.mktemp("gguf")
    run = exported.parent / "run"
    for dtype in ("f32", "f16"):
        assert main(["export", str(run), "--format", "gguf", "--gguf-dtype", dtype, "-o", str(out / f"tiny-{dtype}.gguf")]) == 0
    return out


def field(reader, key):
    value = reader.fields[key]
    return value.contents() if hasattr(value, "contents") else value.parts[value.data[0]]


def test_the_file_holds_a_llama_and_a_gpt2_style_tokenizer(files, exported):
    reader = gguf.GGUFReader(files / "tiny-f32.gguf")
    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    config = AutoModelForCausalLM.from_pretrained(str(exported)).config
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "tokenizer.ggml.model") == "gpt2" and field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert field(reader, "tokenizer.ggml.tokens") == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert field(reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert field(reader, "tokenizer.ggml.eot_token_id") == tokenizer.convert_tokens_to_ids("<|end|>")
    assert field(reader, "tokenizer.chat_template") == tokenizer.chat_template
    assert field(reader, "llama.block_count") == config.num_hidden_layers
    assert field(reader, "llama.attention.head_count_kv") == config.num_key_value_heads
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"} <= names
    half = {t.name: t.tensor_type for t in gguf.GGUFReader(files / "tiny-f16.gguf").tensors}
    assert half["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16 and half["output_norm.weight"] == gguf.GGMLQuantizationType.F32


def test_a_model_with_scene_aware_extras_is_refused(exported, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    looped = LtmForCausalLM(LtmConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64, loop_core_layers=1, loop_prelude_layers=1,
                                      think_steps=2))
    looped.save_pretrained(str(tmp_path / "looped"))
    with pytest.raises(ExportError, match="plain-Llama"):
        export_gguf(tmp_path / "looped", tmp_path / "looped.gguf", tokenizer=exported)
    assert not (tmp_path / "looped.gguf").exists()


def test_llama_cpp_generates_what_transformers_generates(files, exported):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'ltm[llama]'; it builds "
                                                        "llama.cpp from source, 10-15 minutes on 2 cores; CI installs it)")
    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    model = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    llm = llama_cpp.Llama(model_path=str(files / "tiny-f32.gguf"), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    # The same pre-tokenizer and merges: llama.cpp splits text exactly as the Hugging Face tokenizer does.
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == tokenizer.encode(TEXT, add_special_tokens=False)
    assert llm.tokenize(b"<|user|>hi<|end|>", add_bos=False, special=True) == tokenizer.encode("<|user|>hi<|end|>", add_special_tokens=False)

    prompt = [tokenizer.bos_token_id] + tokenizer.encode("THEON: Can a thing be", add_special_tokens=False)
    new = 20
    with torch.no_grad():
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(prompt):]
    produced = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, reset=True):
        produced.append(token)
        if len(produced) == new:
            break
    assert produced == expected.tolist()

    # f16 weights: the prompt's next-token logits agree with transformers' to half precision.
    half = llama_cpp.Llama(model_path=str(files / "tiny-f16.gguf"), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    half.eval(prompt)
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1]
    assert torch.allclose(torch.tensor(half.scores[len(prompt) - 1]), logits, atol=0.05)
