"""Sampling text from a model: temperature and top-k, with the model's KV cache.

`continuations` samples many prompts at once on the device: prompts are sorted by length and go
as many to a batch as fit a budget of cached tokens (ltm.eval.batches), each batch prefilled in one
pass, right-padded, into a static KV cache as long as its longest prompt and continuation; then one
decoding step advances every row, each at its own position (as `ltm serve` batches requests). A
padded position's keys are never read: a row's mask stops at its own position, and its next token
overwrites that slot before any later query can see it. Row i draws its tokens from uniform numbers of
its own generator (seeded with the seed and i), by the inverse of its distribution's cumulative sum:
a continuation is the same whichever prompts share its batch, and the same as the prompt sampled alone.
"""

from __future__ import annotations

import torch

from ltm.eval.batches import token_batches
from ltm.model.cache import StaticKVCache

ROWS = 64  # a batch caches as many tokens as 64 rows of the whole context: small next to the model


@torch.no_grad()
def sample(model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> str:
    device = next(model.parameters()).device
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)], device=device)
    ids = ids[:, -(model.config.max_position_embeddings - 1) :]
    new = model.generate_ids(ids, max_new_tokens, temperature=temperature, top_k=top_k, eos_token_id=tokenizer.eos_token_id,
                             generator=torch.Generator(device=device).manual_seed(seed))
    return tokenizer.decode(new[0].tolist(), skip_special_tokens=True)


@torch.no_grad()
def continuations(model, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_k: int | None,
                  eos_token_id: int | None, seed: int, first_row: int = 0) -> list[list[int]]:
    """The new tokens after each prompt (token ids, each within the context), up to and including
    the first eos; prompt i samples with generator seed (seed, first_row + i)."""
    context = model.config.max_position_embeddings
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    spans = [min(context, len(prompts[i]) + max_new_tokens) for i in order]  # the cache each row needs
    out: list[list[int]] = [[] for _ in prompts]
    for part in token_batches(spans, ROWS * context):
        group = order[part]
        rows = _batch(model, [prompts[i] for i in group], max_new_tokens, temperature, top_k, eos_token_id,
                      [seed * 1_000_003 + first_row + i for i in group])
        for i, row in zip(group, rows):
            out[i] = row
    return out


def _batch(model, prompts, max_new_tokens, temperature, top_k, eos_token_id, seeds) -> list[list[int]]:
    model.eval()
    device = next(model.parameters()).device
    autocast = torch.is_autocast_enabled(device.type)
    dtype = torch.get_autocast_dtype(device.type) if autocast else next(model.parameters()).dtype
    context, rows = model.config.max_position_embeddings, len(prompts)
    lengths = [len(p) for p in prompts]
    limits = [max(0, min(max_new_tokens, context - n)) for n in lengths]
    if not max(limits, default=0):  # every prompt fills the context: nothing to draw
        return [[] for _ in prompts]
    span = min(context, max(lengths) + max_new_tokens)
    cache = StaticKVCache(rows, span, device, dtype)
    uniforms = None  # greedy draws none
    if temperature > 0:
        uniforms = torch.stack([torch.rand(max_new_tokens, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                                for s in seeds], 1).to(device)  # (step, row)
    ids = torch.zeros(rows, max(lengths), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = torch.tensor(p)
    position = torch.tensor(lengths, device=device)
    logits = model(ids.to(device), cache=cache.view(slice(0, rows), torch.zeros(rows, dtype=torch.long, device=device))).logits
    logits = logits[torch.arange(rows, device=device), position - 1].float()
    picked = []
    for step in range(max(limits)):
        token = _draw(logits, temperature, top_k, None if uniforms is None else uniforms[step])
        picked.append(token)
        if step + 1 == max(limits):
            break
        # A row past its limit writes on in its last position; what it draws there is cut below.
        view = cache.view(slice(0, rows), torch.clamp(position, max=span - 1))
        logits = model(token[:, None], cache=view).logits[:, -1].float()
        position += 1
    table = torch.stack(picked, 1).tolist()
    out = []
    for row, limit in zip(table, limits):
        row = row[:limit]
        if eos_token_id is not None and eos_token_id in row:
            row = row[: row.index(eos_token_id) + 1]
        out.append(row)
    return out


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, uniform: torch.Tensor | None) -> torch.Tensor:
    """Greedy at temperature 0; else the token where the row's cumulative probability (top k,
    at this temperature) first exceeds its uniform number."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cumulative = torch.softmax(logits.double(), -1).cumsum(-1)
    cumulative[:, -1] = 1.0  # rounding never leaves a uniform number above the last token
    return torch.searchsorted(cumulative, uniform[:, None].to(cumulative.dtype)).squeeze(-1).clamp(max=logits.shape[-1] - 1)
