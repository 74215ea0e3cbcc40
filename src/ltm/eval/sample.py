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
