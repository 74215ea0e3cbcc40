"""Learning-rate schedules: linear warmup, then cosine decay to a floor, or warmup-stable-decay
(constant, then a linear decay over the last `decay_fraction` of the steps)."""

from __future__ import annotations

import math

from ltm.config import TrainConfig


def lr_at(step: int, train: TrainConfig) -> float:
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    floor = train.lr * train.min_lr_ratio
    if train.schedule == "wsd":
        decay_start = int(train.steps * (1 - train.decay_fraction))
        if step < decay_start:
            return train.lr
        progress = (step - decay_start) / max(1, train.steps - decay_start)
        return train.lr - (train.lr - floor) * min(1.0, progress)
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    return floor + (train.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
