"""The initiation stage: after pretraining, a short last stage on a separate dataset of dialogue
scenes (docs/training.md, "Initiation stage"). `initiation.mode` chooses it: `lora` puts LoRA
adapters on the frozen base, trains them and merges them into the weights; `full` trains every
parameter; `none` keeps the pretrained model (the two comparisons). Training goes through the same
`fit` as pretraining, with the `train` section's settings and the initiation's steps, learning rate
and batch size.

`tune_hf` runs the same stage on any local Hugging Face causal-LM folder (a Qwen, a Saiga, ...)
with its own tokenizer, on plain texts.

OUT_DIR/checkpoint is always a plain model folder, the adapters merged; under LoRA the adapter
alone stays in OUT_DIR/adapter (peft's format).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from ltm.dataset.reader import load_manifest
from ltm.dataset.tokenizer import load_tokenizer, tokenizer_sha256
from ltm.config import RunConfig, TrainConfig
from ltm.io import atomic_dir, iter_jsonl
from ltm.log import info
from ltm.model import LtmForCausalLM
from ltm.model.factory import load_model
from ltm.train import distributed
from ltm.train.adapters import Trainable, describe_lora, with_lora
from ltm.train.data import ShardBatches, loss_windows
from ltm.train.loop import TrainError, fit, prepare
from ltm.train.pretrain import dataset_batches, shard_batches

HELDOUT_TEXTS = 0.1  # tune_hf: the share of the texts held out to measure the loss


def initiation_train_config(config: RunConfig) -> TrainConfig:
    """config.train with the initiation's steps, learning rate and batch size, a warmup of a tenth
    of the steps, and no intermediate checkpoints: the stage is short and is rerun whole."""
    ini, tc = config.initiation, config.train
    return tc.model_copy(update={
        "steps": ini.steps, "lr": ini.lr, "batch_size": ini.batch_size, "warmup_steps": max(1, ini.steps // 10),
        "micro_batch_size": min(tc.micro_batch_size, ini.batch_size) if tc.micro_batch_size else None, "checkpoint_every": 0,
    })


def initiate(config: RunConfig, checkpoint: str | Path, dataset_dir: str | Path, out_dir: str | Path) -> Path:
    """Initiate the pretrained LtmForCausalLM in CHECKPOINT on DATASET_DIR (built with the same
    tokenizer); return OUT_DIR/checkpoint, which loads with LtmForCausalLM.from_pretrained."""
    checkpoint, dataset_dir, out_dir = Path(checkpoint), Path(dataset_dir), Path(out_dir)
    mode = config.initiation.mode
    if not (checkpoint / "config.json").exists():
        raise TrainError(f"{checkpoint}: no config.json; give a trained checkpoint folder such as RUN/train/checkpoint")
    if mode == "none":
        with atomic_dir(out_dir / "checkpoint") as tmp:
            shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
        info(f"initiation: mode none, the pretrained model unchanged -> {out_dir / 'checkpoint'}")
        return out_dir / "checkpoint"
    manifest = load_manifest(dataset_dir)
    _check_same_tokenizer(checkpoint, dataset_dir, manifest.tokenizer_sha256)
    tokenizer, model = load_tokenizer(checkpoint), load_model(checkpoint)
    tc = initiation_train_config(config)
    seq_len = model.config.max_position_embeddings
    world = distributed.setup(tc.device)
    try:
        batches, windows = dataset_batches(dataset_dir, manifest, seq_len, tc, world)
        _tune(model, tokenizer, config, tc, batches, windows, out_dir, world, torch.float32)
    finally:
        distributed.teardown(world)
    return out_dir / "checkpoint"


def tune_hf(model_dir: str | Path, texts: list[str], config: RunConfig, out_dir: str | Path) -> Path:
    """LoRA-tune (or, with initiation.mode full, fully tune) the Hugging Face causal LM in MODEL_DIR
    on `texts` with its own tokenizer; return OUT_DIR/checkpoint, which loads with
    AutoModelForCausalLM and keeps the model's dtype."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if config.initiation.mode == "none":
        raise TrainError("initiation.mode is none: set it to lora or full to tune a model")
    tokenizer, model = _load_hf(model_dir)
    dtype = model.dtype
    model.float()  # fp32 master weights for the optimizer; on GPUs bf16 autocast brings the speed
    positions = getattr(model.config, "max_position_embeddings", None) or config.model.max_seq_len
    seq_len = min(positions, config.model.max_seq_len)
    train_ids, heldout_ids = _token_streams(tokenizer, texts, config.seed)
    tc = initiation_train_config(config)
    world = distributed.setup(tc.device)
    try:
        batches = shard_batches(train_ids, seq_len, tc, world, "the texts")
        windows = loss_windows(heldout_ids, seq_len, tc.eval_batches * tc.batch_size)
        _tune(model, tokenizer, config, tc, batches, windows, out_dir, world, dtype)
    finally:
        distributed.teardown(world)
    return out_dir / "checkpoint"


def read_texts(paths: list[Path]) -> list[str]:
    """Texts to tune on: the `text` of each line of a .jsonl file (DOCS.jsonl, SCENES.jsonl), any
    other file whole (.txt, .md)."""
    texts = []
    for path in paths:
        if path.suffix != ".jsonl":
            texts.append(path.read_text(encoding="utf-8"))
            continue
        for number, record, problem in iter_jsonl(path):
            if problem or not isinstance(record.get("text"), str):
                raise TrainError(f"{path}:{number}: {problem or 'no `text` string'}")
            texts.append(record["text"])
    return [t for t in texts if t.strip()]


def _tune(model: PreTrainedModel, tokenizer, config: RunConfig, tc: TrainConfig, batches: ShardBatches, windows, out_dir: Path,
          world: distributed.World, dtype: torch.dtype) -> None:
    """Train `model` in the initiation's mode and leave the final model, in `dtype`, in OUT_DIR/checkpoint."""
    if world.size > 1 and tc.distributed == "fsdp":
        raise TrainError("the initiation stage shards nothing: set train.distributed to ddp for several processes")
    base = model.config.describe_extras() if isinstance(model, LtmForCausalLM) else type(model).__name__
    if config.initiation.mode == "full":
        fit(prepare(Trainable(model, f"{base}; every parameter trained"), tokenizer, tc, batches, windows, out_dir, world,
                    measure_start=True, name=config.name))
        if world.main and dtype != torch.float32:
            _save(model.to(dtype), tokenizer, out_dir / "checkpoint")
    else:
        lora = with_lora(model, config.initiation)
        fit(prepare(Trainable(lora, f"{base}; {describe_lora(lora)}"), tokenizer, tc, batches, windows, out_dir, world,
                    measure_start=True, name=config.name))
        if world.main:
            # fit saved the adapter alone as OUT/checkpoint: keep it as OUT/adapter, put the merged model in its place.
            shutil.rmtree(out_dir / "adapter", ignore_errors=True)
            os.replace(out_dir / "checkpoint", out_dir / "adapter")
            _save(lora.merge_and_unload().to(dtype), tokenizer, out_dir / "checkpoint")
            info(f"initiation: LoRA merged into the weights -> {out_dir / 'checkpoint'} (the adapter alone: {out_dir / 'adapter'})")
    distributed.barrier(world)


def _save(model: PreTrainedModel, tokenizer, folder: Path) -> None:
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))


def _check_same_tokenizer(checkpoint: Path, dataset_dir: Path, dataset_sha256: str) -> None:
    if not (checkpoint / "tokenizer.json").exists():
        raise TrainError(f"{checkpoint}: no tokenizer.json; the checkpoint must carry the tokenizer it was trained with")
    if tokenizer_sha256(checkpoint) != dataset_sha256:
        raise TrainError(f"{dataset_dir} was built with another tokenizer than the model in {checkpoint}: rebuild it with "
                         "build.tokenizer set to the pretraining dataset's tokenizer folder (DATASET/tokenizer)")


def _load_hf(model_dir: Path) -> tuple:
    if not (model_dir / "config.json").exists():
        raise TrainError(f"{model_dir}: no config.json; give a Hugging Face model folder (save_pretrained)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype="auto")
    except (OSError, ValueError, KeyError) as exc:
        raise TrainError(f"{model_dir}: transformers cannot load a causal LM and its tokenizer from it: {exc}") from None
    return tokenizer, model


def _token_streams(tokenizer, texts: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The texts as a training and a held-out token stream, each text followed by eos; one text in
    ten (at least one), chosen with the seed, is held out."""
    if len(texts) < 2:
        raise TrainError(f"{len(texts)} text(s): tuning needs at least two, one is held out to measure the loss "
                         "(each .txt file is one text, each JSONL line one)")
    heldout = set(random.Random(seed).sample(range(len(texts)), max(1, round(HELDOUT_TEXTS * len(texts)))))
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    streams: tuple[list[int], list[int]] = ([], [])
    for i, ids in enumerate(tokenizer(texts, verbose=False)["input_ids"]):
        streams[i in heldout].extend(ids + eos)
    return np.asarray(streams[0], dtype=np.int64), np.asarray(streams[1], dtype=np.int64)
