"""How evaluation packs sequences into forward passes: sorted by length, so a pass holds sequences
of about one length and little of it is padding, and as many to a pass as fit a budget of tokens
(EvalConfig.batch_size sequences of the model's whole context), so short sequences (questions,
answers, cloze sentences) go hundreds to a pass instead of batch_size."""

from __future__ import annotations

from collections.abc import Sequence


def token_batches(widths: Sequence[int], tokens: int) -> list[slice]:
    """Consecutive slices of `widths` (sorted ascending) whose rows times their widest row stay
    within `tokens`; a row wider than the budget gets a pass of its own."""
    out, start = [], 0
    for end in range(1, len(widths) + 1):
        if end - start > 1 and (end - start) * widths[end - 1] > tokens:
            out.append(slice(start, end - 1))
            start = end - 1
    if start < len(widths):
        out.append(slice(start, len(widths)))
    return out
