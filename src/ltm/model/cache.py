"""KV caches for generation. The model asks a cache four things: the token positions of this call,
the token history (for the scene states, which look back), each attention slot's keys and values
with the mask to apply, and to move on once the call is done.

A slot is one application of an attention layer: with the self-loop on, the core layers run once
per thinking step, and each (layer, step) keeps its own keys and values, exactly as a full
recomputation would produce them.

- KVCache grows by concatenation, one length for the whole batch: simple, used by generate_ids.
- StaticKVCache preallocates (rows, heads, context, head_dim) per slot, and each row sits at its
  own position: the server decodes many requests of different lengths in one batch, and since no
  tensor changes shape or address, a decoding step can be captured as a CUDA graph.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self) -> None:
        self._slots: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.length = 0  # tokens already in the cache
        self.ids: torch.Tensor | None = None  # those tokens, for the scene states

    def positions(self, t: int, limit: int, device: torch.device) -> torch.Tensor:
        if self.length + t > limit:
            raise ValueError(f"sequence of {self.length + t} tokens exceeds max_position_embeddings={limit}")
        return torch.arange(self.length, self.length + t, device=device)

    def history(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All ids so far (B, past + t), and None: this call's states are the last t."""
        self.ids = input_ids if self.ids is None else torch.cat([self.ids, input_ids], dim=1)
        return self.ids, None

    def extend(self, slot: tuple[int, int], k: torch.Tensor, v: torch.Tensor):
        """Append this call's keys/values (B, H, t, D); return the slot's whole history and the
        attention mask (None: plain causal, as when the cache was empty)."""
        if slot in self._slots:
            past_k, past_v = self._slots[slot]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self._slots[slot] = (k, v)
        t, past = k.shape[2] - self.length, self.length
        if past == 0:
            return k, v, None
        # New tokens see every cached token and the new ones up to themselves.
        return k, v, torch.ones(t, past + t, dtype=torch.bool, device=k.device).tril(diagonal=past)

    def advance(self, t: int) -> None:
        self.length += t


class StaticKVCache:
    """Keys and values for `rows` sequences of up to `context` tokens each, allocated once per slot.
    A call works on rows [0, b) through a view that names each row's first position."""

    def __init__(self, rows: int, context: int, device: torch.device, dtype: torch.dtype):
        self.rows, self.context, self.device, self.dtype = rows, context, device, dtype
        self._slots: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.ids = torch.zeros(rows, context, dtype=torch.long, device=device)

    def view(self, rows: slice, start: torch.Tensor) -> StaticView:
        return StaticView(self, rows, start)

    def buffers(self, slot: tuple[int, int], k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if slot not in self._slots:
            shape = (self.rows, k.shape[1], self.context, k.shape[3])
            self._slots[slot] = (torch.zeros(shape, dtype=self.dtype, device=self.device),
                                 torch.zeros(shape, dtype=self.dtype, device=self.device))
        return self._slots[slot]


class StaticView:
    """Rows `rows` of a StaticKVCache, the b-th starting at position start[b]. Writes go in place
    (scatter), reads cover the whole context with a mask, so shapes never depend on lengths."""

    def __init__(self, cache: StaticKVCache, rows: slice, start: torch.Tensor):
        self.cache, self.rows, self.start = cache, rows, start
        self._index: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None

    def positions(self, t: int, limit: int, device: torch.device) -> torch.Tensor:
        self._index = self.start[:, None] + torch.arange(t, device=device)  # (B, t); the caller keeps it in range
        return self._index

    def history(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.cache.ids[self.rows]
        ids.scatter_(1, self._index, input_ids)
        return ids, self._index

    def extend(self, slot: tuple[int, int], k: torch.Tensor, v: torch.Tensor):
        keys, values = (buffer[self.rows] for buffer in self.cache.buffers(slot, k))
        where = self._index[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        keys.scatter_(2, where, k.to(keys.dtype))
        values.scatter_(2, where, v.to(values.dtype))
        if self._mask is None:  # the same for every slot of this call
            context = torch.arange(self.cache.context, device=k.device)
            self._mask = (context[None, None, :] <= self._index[:, :, None])[:, None]  # (B, 1, t, context)
        return keys, values, self._mask

    def advance(self, t: int) -> None:
        """Positions belong to the caller (the server keeps one tensor per row)."""
