"""Bits per byte: cross-entropy over text tokens divided by the UTF-8 bytes they stand for.

Marker tokens (scene boundaries, end of text) carry no bytes, so their predictions are left out of
both sums; what remains is comparable across tokenizers. Per-token losses are kept so the same
pass gives bits per byte overall and for any group of token ranges (document, author, phase, lens).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ltm.dataset.reader import eval_windows


@torch.no_grad()
def token_nll(model, tokens: np.ndarray, seq_len: int, batch_size: int = 64, device: torch.device | None = None) -> np.ndarray:
    """Loss in nats of every token given the tokens before it in its window of seq_len; NaN for
    the first token, which nothing predicts. Windows do not overlap, as in the quick reference.
    Window k predicts tokens k*seq_len+1 onwards, so the windows' losses in order are the tokens'
    from the second on: they stay on the device and come back in one transfer."""
    model.eval()
    device = device or next(model.parameters()).device
    nll = np.full(len(tokens), np.nan)
    windows = eval_windows(tokens, seq_len)
    full = [w for w in windows if len(w) == seq_len + 1]  # all but perhaps the last, which may be shorter
    losses = []
    for part in [full[i : i + batch_size] for i in range(0, len(full), batch_size)] + [windows[len(full):]]:
        if part:
            rows = torch.from_numpy(np.stack(part)).to(device)
            logits = model(rows[:, :-1]).logits
            losses.append(F.cross_entropy(logits.float().transpose(1, 2), rows[:, 1:], reduction="none").reshape(-1))
    if losses:
        scored = torch.cat(losses).cpu().numpy()
        nll[1 : 1 + len(scored)] = scored
    return nll


def unigram_nll(train_counts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The same per-token loss for a unigram model fitted on the training tokens' counts per id
    (SplitTokens.counts), with add-one smoothing."""
    counts = np.asarray(train_counts, dtype=np.float64) + 1.0
    nll = -np.log(counts / counts.sum())[np.asarray(tokens, dtype=np.int64)]
    nll[0] = np.nan
    return nll


def bits_per_byte(nll: np.ndarray, tokens: np.ndarray, byte_lengths: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int, int]:
    """(bpb, text tokens scored, bytes) over the tokens where `mask` is true (all by default)."""
    lengths = byte_lengths[np.asarray(tokens, dtype=np.int64)]
    scored = ~np.isnan(nll) & (lengths > 0)
    if mask is not None:
        scored &= mask
    n_bytes = int(lengths[scored].sum())
    return float(nll[scored].sum() / math.log(2) / max(n_bytes, 1)), int(scored.sum()), n_bytes


def range_mask(length: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A boolean mask that is true inside the given [start, end) token ranges."""
    delta = np.zeros(length + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    return np.cumsum(delta[:-1]) > 0
