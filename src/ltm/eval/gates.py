"""What the channel gates learned (model.channels): for the tokens under each lens, the gate's mean
probability of each channel, per layer and averaged over layers, next to the channel the
lens-alignment loss (model.channel_aux_weight) maps the lens to, if any.

A token's lens is the one the model itself reads off the markers (ltm.model.scene_state: the
current scene's `<|lens:…|>` marker; "plain" for a scene without one, and for text outside scenes),
the lens the alignment loss is computed on. Windows of the model's context start at scenes of each
lens of the split, drawn at random with a fixed seed, so every lens present is read. In a self-looped
model a core layer's gate is the one of its last step.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel

from ltm.model.layers import ChannelMLP
from ltm.model.scene_state import SceneStates


class GateReadout(BaseModel):
    channels: list[str]
    lenses: list[str]  # "plain" first (no lens marker), then the model's lens markers
    tokens: dict[str, int]  # tokens read under each lens
    mean: dict[str, list[float]]  # lens -> mean gate probability per channel, averaged over the layers with channels
    by_layer: dict[str, dict[str, list[float]]]  # layer index -> lens -> mean gate probability per channel
    mapped: dict[str, str]  # lens -> the channel the alignment loss nudges it towards (config.channel_lenses)


@torch.no_grad()
def gate_readout(model, tokens, segments: dict[str, np.ndarray], windows_per_lens: int = 16, batch_size: int = 16,
                 seed: int = 0) -> GateReadout:
    """Read the gates on windows of `tokens` (a split) that start at scenes of each lens in `segments`."""
    gated = {i: layer.mlp for i, layer in enumerate(model.model.layers) if isinstance(layer.mlp, ChannelMLP)}
    if not gated:
        raise ValueError("the model has no channels (model.channels is 0 or 1): there are no gates to read")
    model.eval()
    device = next(model.parameters()).device
    config = model.config
    context = config.max_position_embeddings
    states = model.model.scene_states or SceneStates(config)
    lens_names = ["plain", *config.lens_names]
    rng = np.random.default_rng(seed)
    starts = []
    for lens in np.unique(segments["lens"]):
        first = segments["start"][segments["lens"] == lens]
        starts += rng.choice(first, min(windows_per_lens, len(first)), replace=False).tolist()
    starts = sorted({min(int(s), max(len(tokens) - context, 0)) for s in starts})
    k = config.channels
    sums = torch.zeros(len(gated), len(lens_names), k, dtype=torch.float64)
    counts = torch.zeros(len(lens_names), dtype=torch.float64)
    for at in range(0, len(starts), batch_size):
        ids = torch.tensor(np.stack([np.asarray(tokens[s:s + context], dtype=np.int64) for s in starts[at:at + batch_size]]),
                           device=device)
        model(ids)
        onehot = torch.nn.functional.one_hot(states(ids)["lens"], len(lens_names)).double().reshape(-1, len(lens_names))
        counts += onehot.sum(0).cpu()
        for j, mlp in enumerate(gated.values()):
            sums[j] += (onehot.T @ mlp.last_gate.double().reshape(-1, k)).cpu()
    means = sums / counts.clamp(min=1)[None, :, None]
    present = [n for n, name in enumerate(lens_names) if counts[n] > 0]

    def table(values: torch.Tensor) -> dict[str, list[float]]:
        return {lens_names[n]: [round(float(v), 4) for v in values[n]] for n in present}

    mapped = {lens: channel for channel, lenses in config.channel_lenses.items() for lens in lenses if lens in lens_names}
    return GateReadout(channels=list(config.channel_names), lenses=[lens_names[n] for n in present],
                       tokens={lens_names[n]: int(counts[n]) for n in present}, mean=table(means.mean(0)),
                       by_layer={str(i): table(means[j]) for j, i in enumerate(gated)}, mapped=mapped)
