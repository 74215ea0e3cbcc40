"""The one batched log-likelihood scorer every ranking instrument uses (QA multiple choice, cloze,
the memorization gap): log p(continuation | context), teacher-forced, summed over the
continuation's tokens.

Pairs are sorted by length and right-padded into batches on the model's device, so a batch wastes
little and the padding, coming after every real token, cannot change what a causal model predicts.
A pair longer than the model's context loses its context's oldest tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


@torch.no_grad()
def continuation_logprobs(model, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                          batch_size: int = 64, device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sum of log p over each continuation's tokens in nats, its token count) for every pair; a
    pair's context must hold at least one token and its continuation at least one."""
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts for {len(continuations)} continuations")
    model.eval()
    device = device or next(model.parameters()).device
    limit = model.config.max_position_embeddings + 1  # inputs are the sequence less its last token
    rows = []
    for context, continuation in zip(contexts, continuations):
        if not context or not continuation:
            raise ValueError("every pair needs a context token and a continuation token")
        continuation = list(continuation)[-(limit - 1):]
        rows.append((list(context)[-(limit - len(continuation)):] + continuation, len(continuation)))
    logprob, count = np.zeros(len(rows)), np.asarray([n for _, n in rows], dtype=np.int64)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    for start in range(0, len(order), batch_size):
        group = order[start:start + batch_size]
        width = max(len(rows[i][0]) for i in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        for r, i in enumerate(group):
            ids[r, :len(rows[i][0])] = torch.tensor(rows[i][0])
        ids = ids.to(device)
        logits = model(ids[:, :-1]).logits.float()
        token_logprob = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0].cpu().numpy()
        for r, i in enumerate(group):
            length, n = len(rows[i][0]), rows[i][1]
            logprob[i] = token_logprob[r, length - 1 - n:length - 1].sum()
    return logprob, count
