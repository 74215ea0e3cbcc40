"""The one batched log-likelihood scorer every ranking instrument uses (QA multiple choice, cloze,
the memorization gap): log p(continuation | context), teacher-forced, summed over the
continuation's tokens.

Pairs are sorted by length and right-padded into passes of about batch_size full contexts' worth
of tokens (ltm.eval.batches) on the model's device, so a pass wastes little and the padding, coming
after every real token, cannot change what a causal model predicts. Only the continuations'
positions are projected onto the vocabulary, and sums stay on the device until the last pass: one
transfer, not one per pass.
A pair longer than the model's context loses its context's oldest tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ltm.eval.batches import token_batches
from ltm.model.modeling import LtmForCausalLM


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
    lengths = np.asarray([len(ids) for ids, _ in rows], dtype=np.int64)
    count = np.asarray([n for _, n in rows], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    sums = []
    for part in token_batches(lengths[order], batch_size * limit):
        group = order[part]
        ids = np.zeros((len(group), lengths[group[-1]]), dtype=np.int64)
        scored = np.zeros((len(group), ids.shape[1] - 1), dtype=bool)  # the continuation's predictions
        for r, i in enumerate(group):
            sequence, n = rows[i]
            ids[r, :len(sequence)] = sequence
            scored[r, len(sequence) - 1 - n:len(sequence) - 1] = True
        ids, scored = torch.from_numpy(ids).to(device), torch.from_numpy(scored).to(device)
        logits = _logits_at(model, ids[:, :-1], scored).float()
        token_logprob = logits.gather(-1, ids[:, 1:][scored][:, None])[:, 0] - torch.logsumexp(logits, -1)
        sums.append(torch.zeros(len(group), dtype=torch.float64, device=device).index_add_(0, scored.nonzero()[:, 0], token_logprob.double()))
    logprob = np.zeros(len(rows))
    if sums:
        logprob[order] = torch.cat(sums).cpu().numpy()
    return logprob, count


def _logits_at(model, ids: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """The logits of the positions `where` marks, (n, vocabulary): ltm's own model projects only
    those onto the vocabulary (a continuation is a few tokens of a pair; the projection and its
    log-sum-exp over every position were most of a pass's memory traffic); another model gives all."""
    if isinstance(model, LtmForCausalLM):
        return model.lm_head(model.model(ids)[0][where])
    return model(ids).logits[where]
