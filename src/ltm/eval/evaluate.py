"""Evaluate a trained run: held-out bpb of the trained model, the untrained model and a unigram model."""

from __future__ import annotations

from pathlib import Path

from ltm.build.dataset import load_manifest, load_split
from ltm.build.tokenizer import load_tokenizer, token_byte_lengths, tokenizer_sha256
from ltm.config import RunConfig
from ltm.eval.bpb import model_bpb, unigram_bpb
from ltm.eval.sample import sample
from ltm.formats import Baselines, EvalResult
from ltm.log import info
from ltm.model import LtmForCausalLM
from ltm.train.loop import build_model


class EvalError(ValueError):
    pass


def evaluate(config: RunConfig, dataset_dir: str | Path, checkpoint: str | Path) -> EvalResult:
    manifest = load_manifest(dataset_dir)
    tokenizer_dir = Path(dataset_dir) / manifest.tokenizer
    if tokenizer_sha256(tokenizer_dir) != manifest.tokenizer_sha256:
        raise EvalError(f"{tokenizer_dir}: tokenizer differs from the one the manifest was built with")
    tokenizer = load_tokenizer(tokenizer_dir)
    model = LtmForCausalLM.from_pretrained(str(checkpoint))
    if model.config.vocab_size != manifest.vocab_size:
        raise EvalError(f"{checkpoint}: model vocabulary {model.config.vocab_size} != dataset vocabulary {manifest.vocab_size}")
    heldout = load_split(dataset_dir, manifest, "heldout")
    if len(heldout) < 2:
        raise EvalError(f"{dataset_dir}: the held-out split is empty")
    lengths = token_byte_lengths(tokenizer)
    seq_len = model.config.max_position_embeddings

    bpb, n_tokens, n_bytes = model_bpb(model, heldout, lengths, seq_len)
    untrained, _, _ = model_bpb(build_model(config, tokenizer), heldout, lengths, seq_len)
    unigram = unigram_bpb(load_split(dataset_dir, manifest, "train"), heldout, lengths, seq_len)
    info(f"held-out bits per byte: model {bpb:.3f}, unigram {unigram:.3f}, untrained {untrained:.3f} ({n_bytes:,} bytes)")

    samples = [
        {"prompt": prompt, "text": sample(model, tokenizer, prompt, config.eval.sample_tokens, seed=config.seed)}
        for prompt in config.eval.samples
    ]
    return EvalResult(
        heldout_bpb=bpb,
        heldout_tokens=n_tokens,
        heldout_bytes=n_bytes,
        baselines=Baselines(unigram_bpb=unigram, untrained_bpb=untrained),
        samples=samples,
    )
