"""The KV cache for generation: keys and values per attention slot, grown as tokens are decoded.

A slot is one application of an attention layer: with the self-loop on, the core layers run once
per thinking step, and each (layer, step) keeps its own keys and values, exactly as a full
recomputation would produce them.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self) -> None:
        self._slots: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.length = 0  # tokens already in the cache
        self.ids: torch.Tensor | None = None  # those tokens, for the scene states (which look back)

    def extend(self, slot: tuple[int, int], k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys/values (B, H, T, D) and return the whole history for the slot."""
        if slot in self._slots:
            past_k, past_v = self._slots[slot]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self._slots[slot] = (k, v)
        return k, v
