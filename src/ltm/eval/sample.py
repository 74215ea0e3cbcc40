"""Sampling text from a model: temperature and top-k, with the model's KV cache.

`continuations` samples many prompts at once on the device: each prompt is prefilled alone into
its row of a static KV cache, then one decoding step advances every row, each at its own position
(as `ltm serve` batches requests). Row i draws its tokens from uniform numbers of its own generator
(seeded with the seed and i), by the inverse of its distribution's cumulative sum: a continuation is
the same whichever prompts share its batch, and the same as the prompt sampled alone.
"""

from __future__ import annotations

import torch

from ltm.model.cache import StaticKVCache

ROWS = 64  # prompts decoded together: a static cache of 64 rows of the whole context stays small


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
    out = []
    for start in range(0, len(prompts), ROWS):
        out += _batch(model, prompts[start : start + ROWS], max_new_tokens, temperature, top_k, eos_token_id, seed, first_row + start)
    return out


def _batch(model, prompts, max_new_tokens, temperature, top_k, eos_token_id, seed, first_row) -> list[list[int]]:
    model.eval()
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    context, rows = model.config.max_position_embeddings, len(prompts)
    cache = StaticKVCache(rows, context, device, dtype)
    uniforms = torch.stack([torch.rand(max_new_tokens, generator=torch.Generator().manual_seed(seed * 1_000_003 + first_row + i),
                                       dtype=torch.float64) for i in range(rows)], 1).to(device)  # (step, row)
    limits = [min(max_new_tokens, context - len(p)) for p in prompts]
    logits = torch.cat([model(torch.tensor([p], device=device), cache=cache.view(slice(i, i + 1), torch.zeros(1, dtype=torch.long, device=device)))
                        .logits[:, -1].float() for i, p in enumerate(prompts)])
    position = torch.tensor([len(p) for p in prompts], device=device)
    picked = []
    for step in range(max(limits)):
        token = _draw(logits, temperature, top_k, uniforms[step])
        picked.append(token)
        if step + 1 == max(limits):
            break
        # A row past its limit writes on in its last position; what it draws there is cut below.
        view = cache.view(slice(0, rows), torch.clamp(position, max=context - 1))
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


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, uniform: torch.Tensor) -> torch.Tensor:
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
