"""Sampling text from a model: temperature and top-k, with the model's KV cache."""

from __future__ import annotations

import torch


@torch.no_grad()
def sample(model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> str:
    device = next(model.parameters()).device
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)], device=device)
    ids = ids[:, -(model.config.max_position_embeddings - 1) :]
    new = model.generate_ids(ids, max_new_tokens, temperature=temperature, top_k=top_k, eos_token_id=tokenizer.eos_token_id,
                             generator=torch.Generator(device=device).manual_seed(seed))
    return tokenizer.decode(new[0].tolist(), skip_special_tokens=True)


@torch.no_grad()
def greedy_continuations(model, contexts: list[list[int]], max_new_tokens: int, eos_token_id: int | None = None,
                         batch_size: int = 64) -> list[list[int]]:
    """The greedy continuation of every context, batched with the KV cache: contexts of one length
    go together, so no row is padded (a fact set's prompts come in few lengths)."""
    device = next(model.parameters()).device
    keep = model.config.max_position_embeddings - max_new_tokens
    trimmed = [list(c)[-keep:] for c in contexts]
    out: list[list[int]] = [[] for _ in contexts]
    by_length: dict[int, list[int]] = {}
    for i, context in enumerate(trimmed):
        by_length.setdefault(len(context), []).append(i)
    for members in by_length.values():
        for start in range(0, len(members), batch_size):
            group = members[start:start + batch_size]
            ids = torch.tensor([trimmed[i] for i in group], device=device)
            for i, row in zip(group, model.generate_ids(ids, max_new_tokens, eos_token_id=eos_token_id).tolist()):
                out[i] = row[:row.index(eos_token_id)] if eos_token_id in row else row
    return out
