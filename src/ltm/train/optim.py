"""Optimizers: AdamW (fused on CUDA), or Muon for the hidden matrices with AdamW for the rest
(embeddings, output head, norms), as modded-nanogpt does."""

from __future__ import annotations

import torch

from ltm.config import TrainConfig


def _adamw(groups: list[dict], train: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


def make_optimizers(model: torch.nn.Module, train: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if train.optimizer == "muon":
        hidden = [p for n, p in named if p.dim() == 2 and "embed_tokens" not in n and "lm_head" not in n]
        hidden_ids = {id(p) for p in hidden}
        rest = [p for _, p in named if id(p) not in hidden_ids]
        decay = [p for p in rest if p.dim() >= 2]
        keep = [p for p in rest if p.dim() < 2]
        muon = torch.optim.Muon(hidden, lr=train.lr, weight_decay=train.weight_decay, adjust_lr_fn="match_rms_adamw")
        groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": keep, "weight_decay": 0.0}]
        return [muon, _adamw([g for g in groups if g["params"]], train, device)]
    # Matrices decay; norms and other vectors do not (the usual GPT recipe).
    decay = [p for _, p in named if p.dim() >= 2]
    keep = [p for _, p in named if p.dim() < 2]
    return [_adamw([{"params": decay, "weight_decay": train.weight_decay}, {"params": keep, "weight_decay": 0.0}], train, device)]


def set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr
