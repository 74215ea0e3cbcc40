"""Sampling text from a model: temperature and top-k over a full forward pass per token."""

from __future__ import annotations

import torch


@torch.no_grad()
def sample(model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> str:
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    ids = [tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)
    window = model.config.max_position_embeddings
    eos = tokenizer.eos_token_id
    new: list[int] = []
    for _ in range(max_new_tokens):
        context = torch.tensor([(ids + new)[-window:]])
        logits = model(context)[0][0, -1].float() / max(temperature, 1e-5)
        top = torch.topk(logits, min(top_k, logits.numel()))
        choice = top.indices[torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)].item()
        if choice == eos:
            break
        new.append(choice)
    return tokenizer.decode(new, skip_special_tokens=True)
