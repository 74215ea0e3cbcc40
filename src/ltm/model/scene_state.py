"""Scene-state embeddings: where each token stands in the scene structure, read off the marker
tokens the builder writes, added to the token embeddings ("positions of scenes", "tension as an
embedding bias").

For every token four states are derived, causally (from it and the tokens before it):
- region: outside a scene, at its opening marker, in its header, or in its body;
- tension: the last `<|tension:…|>` marker of the current scene (none/low/medium/high);
- loop step: the last `<|loop:…|>` marker of the current scene (none/claim/doubt/inversion/new);
- lens: the current scene's `<|lens:…|>` marker (none for the plain lens).
Each is a forward fill of the last marker of its kind, reset where a scene opens or closes, done
with a cumulative maximum over positions: no loop over tokens, and exact under a KV cache.
"""

from __future__ import annotations

import torch
from torch import nn

from ltm.model.config import LtmConfig
from ltm.markup import BODY, HEADER, LOOP_TOKENS, SCENE_BEGIN, SCENE_END, TENSION_TOKENS, lens_token, marker_name
from ltm.model.layers import indexed

REGIONS = {marker_name(token): region for region, token in enumerate((SCENE_END, SCENE_BEGIN, HEADER, BODY))}


def _tables(config: LtmConfig) -> dict[str, torch.Tensor]:
    """Per state kind, a vocabulary-sized table: the state a token sets, or -1 if it sets none."""
    ids = config.scene_token_ids
    tables = {}
    for kind, tokens in (("tension", TENSION_TOKENS.values()), ("loop", LOOP_TOKENS.values()),
                         ("lens", [lens_token(n) for n in config.lens_names])):
        names = [marker_name(token) for token in tokens]
        table = torch.full((config.vocab_size,), -1, dtype=torch.long)
        for boundary in (marker_name(SCENE_BEGIN), marker_name(SCENE_END)):
            table[ids[boundary]] = 0  # a scene's opening and closing reset the state
        for value, name in enumerate(names, start=1):
            if name in ids:
                table[ids[name]] = value
        tables[kind] = table
    region = torch.full((config.vocab_size,), -1, dtype=torch.long)
    for name, value in REGIONS.items():
        region[ids[name]] = value
    tables["region"] = region
    return tables


def _forward_fill(values: torch.Tensor) -> torch.Tensor:
    """values (B, T) with -1 where nothing happens -> the last value at or before each position (0 before any)."""
    positions = torch.arange(values.shape[1], device=values.device).expand_as(values)
    last = torch.where(values >= 0, positions, -1).cummax(dim=1).values
    filled = torch.gather(values, 1, last.clamp(min=0))
    return torch.where(last >= 0, filled, 0)


class SceneStates(nn.Module):
    """Token ids -> the four state ids per token. The lookup tables are derived from the config and
    made per device on first use (from_pretrained would leave non-persistent buffers empty)."""

    def __init__(self, config: LtmConfig):
        super().__init__()
        self.config = config
        self._tables: dict[torch.device, dict[str, torch.Tensor]] = {}
        self.sizes = {"region": len(REGIONS), "tension": len(TENSION_TOKENS) + 1, "loop": len(LOOP_TOKENS) + 1,
                      "lens": len(config.lens_names) + 1}

    def tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        device = indexed(device)
        if device not in self._tables:
            self._tables[device] = {kind: table.to(device) for kind, table in _tables(self.config).items()}
        return self._tables[device]

    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        tables = self.tables(input_ids.device)
        return {kind: _forward_fill(tables[kind][input_ids]) for kind in self.sizes}


class SceneStateEmbedding(nn.Module):
    """The sum of one learned vector per state, zero at initialisation (the extra starts as a no-op)."""

    def __init__(self, config: LtmConfig, sizes: dict[str, int]):
        super().__init__()
        self.embeddings = nn.ModuleDict({kind: nn.Embedding(n, config.hidden_size) for kind, n in sizes.items()})
        for embedding in self.embeddings.values():
            embedding.zero_init = True  # honoured by LtmPreTrainedModel._init_weights

    def forward(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.embeddings[kind](states[kind]) for kind in self.embeddings)
