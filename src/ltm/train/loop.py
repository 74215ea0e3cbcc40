"""The training loop: plain PyTorch, read top to bottom.

AdamW with warmup + cosine decay, gradient clipping, a held-out loss every `eval_every` steps,
metrics as JSON lines, a rich progress bar, and the model saved with `save_pretrained`.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from ltm.build.dataset import load_manifest, load_split
from ltm.build.tokenizer import load_tokenizer, marker_ids
from ltm.io import atomic_dir
from ltm.config import ModelConfig, RunConfig, TrainConfig
from ltm.log import info, progress
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.train.data import SequentialBatches, eval_windows


class TrainError(ValueError):
    pass


def model_config(model: ModelConfig, vocab_size: int, scene_token_ids: dict[str, int]) -> LtmConfig:
    extras = model.model_dump(include={"scene_state", "channels", "channel_names", "channel_aux_weight", "loop_core_layers",
                                       "loop_prelude_layers", "loop_max_steps", "loop_backprop_steps", "think_steps",
                                       "scene_aux_weight", "loop_aux_weight"})
    return LtmConfig(
        vocab_size=vocab_size,
        hidden_size=model.d_model,
        intermediate_size=model.d_ff,
        num_hidden_layers=model.n_layers,
        num_attention_heads=model.n_heads,
        num_key_value_heads=model.n_kv_heads,
        max_position_embeddings=model.max_seq_len,
        rope_theta=model.rope_theta,
        tie_word_embeddings=model.tie_embeddings,
        scene_token_ids=scene_token_ids,
        **extras,
    )


def build_model(config: RunConfig, tokenizer) -> LtmForCausalLM:
    """The model at initialisation; the same seed always gives the same weights (the untrained reference)."""
    torch.manual_seed(config.seed)
    return LtmForCausalLM(model_config(config.model, len(tokenizer), marker_ids(tokenizer)))


def lr_at(step: int, train: TrainConfig) -> float:
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    progress_ = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    floor = train.lr * train.min_lr_ratio
    return floor + (train.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))


def make_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    # Matrices decay; norms and other vectors do not (the usual GPT recipe).
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    keep = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.95))


@torch.no_grad()
def heldout_loss(model: LtmForCausalLM, windows) -> float:
    model.eval()
    total, count = 0.0, 0
    for window in windows:
        x = torch.from_numpy(window[:-1]).unsqueeze(0)
        y = torch.from_numpy(window[1:]).unsqueeze(0)
        loss = model(x, y).loss
        total += loss.item() * y.numel()
        count += y.numel()
    model.train()
    return total / max(count, 1)


def train(config: RunConfig, dataset_dir: str | Path, out_dir: str | Path) -> Path:
    """Train on DATASET_DIR; write OUT_DIR/metrics.jsonl and OUT_DIR/checkpoint/. Return the checkpoint folder."""
    out_dir = Path(out_dir)
    tc = config.train
    manifest = load_manifest(dataset_dir)
    train_tokens = load_split(dataset_dir, manifest, "train")
    seq_len = config.model.max_seq_len
    try:
        batches = SequentialBatches(train_tokens, seq_len, tc.batch_size)
    except ValueError as exc:
        raise TrainError(f"{dataset_dir}: {exc}") from None
    windows = eval_windows(load_split(dataset_dir, manifest, "heldout"), seq_len, limit=tc.eval_batches * tc.batch_size)

    torch.set_num_threads(tc.threads or os.cpu_count() or 1)
    tokenizer = load_tokenizer(Path(dataset_dir) / manifest.tokenizer)
    model = build_model(config, tokenizer)
    flops = model.flops_per_token(seq_len)
    info(
        f"model: {model.num_parameters():,} parameters ({model.non_embedding_parameters():,} non-embedding), "
        f"{flops / 1e6:.1f} MFLOPs per token (forward+backward); extras: {model.config.describe_extras()}"
    )
    info(f"data: {len(train_tokens):,} training tokens, {tc.steps} steps = {batches.epochs(tc.steps):.1f} passes over them")
    optimizer = make_optimizer(model, tc)

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"
    tokens_per_step = tc.batch_size * seq_len
    started = time.perf_counter()
    with open(metrics_path, "w", encoding="utf-8") as metrics, progress() as bar:
        task = bar.add_task("train", total=tc.steps, info="")
        for step in range(tc.steps):
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = batches.batch(step)
            out = model(x, y)
            loss = out.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip).item()
            optimizer.step()

            elapsed = time.perf_counter() - started
            record = {
                "step": step + 1,
                "loss": round(loss.item(), 5),
                "lr": lr,
                "grad_norm": round(grad_norm, 4),
                **({f"loss_{k}": round(v, 5) for k, v in out.losses.items()} if len(out.losses) > 1 else {}),
                "tokens": (step + 1) * tokens_per_step,
                "tokens_per_s": round((step + 1) * tokens_per_step / elapsed, 1),
                "elapsed_s": round(elapsed, 3),
            }
            if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
                record["heldout_loss"] = round(heldout_loss(model, windows), 5)
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            shown = f"loss {record['loss']:.3f}  {record['tokens_per_s']:,.0f} tok/s"
            if "heldout_loss" in record:
                shown += f"  held-out {record['heldout_loss']:.3f}"
            bar.update(task, advance=1, info=shown)

    checkpoint = out_dir / "checkpoint"
    with atomic_dir(checkpoint) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))  # a checkpoint is self-contained: `ltm export` needs nothing else
    info(f"trained {tc.steps} steps in {time.perf_counter() - started:.0f}s; checkpoint: {checkpoint}")
    return checkpoint
