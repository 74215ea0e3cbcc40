"""Figures for the report, drawn with matplotlib (Agg backend: no display needed)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def loss_curves(runs: dict[str, list[dict]]) -> bytes:
    """Training loss per step and held-out loss where measured, one colour per run; PNG bytes."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for (name, metrics), colour in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
        steps = [m["step"] for m in metrics]
        ax.plot(steps, [m["loss"] for m in metrics], color=colour, alpha=0.6, lw=1, label=f"{name} train")
        held = [(m["step"], m["heldout_loss"]) for m in metrics if "heldout_loss" in m]
        if held:
            ax.plot(*zip(*held), "o-", color=colour, lw=2, label=f"{name} held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("Loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
