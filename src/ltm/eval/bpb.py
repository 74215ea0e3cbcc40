"""Bits per byte: cross-entropy over text tokens divided by the UTF-8 bytes they stand for.

Marker tokens (scene boundaries, end of text) carry no bytes, so their predictions are left out of
both sums; what remains is comparable across tokenizers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ltm.train.data import eval_windows


@torch.no_grad()
def model_bpb(model, tokens: np.ndarray, byte_lengths: np.ndarray, seq_len: int, batch_size: int = 16) -> tuple[float, int, int]:
    """Return (bpb, text tokens scored, bytes) over the whole token stream in windows of seq_len."""
    model.eval()
    weights = torch.from_numpy(byte_lengths)
    nats, n_tokens, n_bytes = 0.0, 0, 0
    windows = eval_windows(tokens, seq_len)
    for i in range(0, len(windows), batch_size):
        group = windows[i : i + batch_size]
        width = max(len(w) for w in group)
        # Pad short windows; padded targets get byte weight 0 through the mask below.
        rows = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width - 1, dtype=torch.bool)
        for r, w in enumerate(group):
            rows[r, : len(w)] = torch.from_numpy(w)
            mask[r, : len(w) - 1] = True
        x, y = rows[:, :-1], rows[:, 1:]
        logits = model(x).logits
        nll = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")
        text = mask & (weights[y] > 0)
        nats += nll[text].sum().item()
        n_tokens += int(text.sum())
        n_bytes += int(weights[y][text].sum())
    return nats / math.log(2) / max(n_bytes, 1), n_tokens, n_bytes


def unigram_bpb(train_tokens: np.ndarray, heldout_tokens: np.ndarray, byte_lengths: np.ndarray, seq_len: int) -> float:
    """The same measure for a unigram model fitted on the training tokens (add-one smoothing)."""
    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=len(byte_lengths)).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    # Score exactly the targets model_bpb scores: every token after the first of each window.
    targets = np.concatenate([w[1:] for w in eval_windows(heldout_tokens, seq_len)]) if len(heldout_tokens) > 1 else np.zeros(0, dtype=np.int64)
    targets = targets[byte_lengths[targets] > 0]
    return float(-log_p[targets].sum() / math.log(2) / max(byte_lengths[targets].sum(), 1))
