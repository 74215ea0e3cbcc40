"""Figures for the report, drawn with matplotlib (Agg backend: no display needed). Each returns PNG
bytes; several runs share one figure, one colour per run."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

COLOURS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def loss_curves(runs: dict[str, list[dict]], phase_starts: dict[str, list[tuple[float, str]]] | None = None) -> bytes:
    """Training loss per step and held-out loss where measured; a dotted line, labelled, where a run
    begins to read a curriculum phase."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for (name, metrics), colour in zip(runs.items(), COLOURS * 10):
        for step, phase in (phase_starts or {}).get(name, []):
            if step > 0:
                ax.axvline(step, color=colour, ls=":", lw=1)
                ax.annotate(phase, (step, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=7, color=colour)
        trained = [m for m in metrics if m.get("loss") is not None]  # a step 0 holds the held-out loss alone
        ax.plot([m["step"] for m in trained], [m["loss"] for m in trained], color=colour, alpha=0.6, lw=1, label=f"{name} train")
        held = [(m["step"], m["heldout_loss"]) for m in metrics if m.get("heldout_loss") is not None]
        if held:
            ax.plot(*zip(*held), "o-", color=colour, lw=2, label=f"{name} held-out")
    ax.set(xlabel="step", ylabel="cross-entropy (nats per token)", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def grouped_bars(title: str, ylabel: str, series: dict[str, dict[str, float]]) -> bytes:
    """Bars per category (x) for each series (run, or model vs data)."""
    categories = list(dict.fromkeys(c for values in series.values() for c in values))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(categories) + 2), 3.8), dpi=110)
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(categories))
    for i, ((name, values), colour) in enumerate(zip(series.items(), COLOURS * 10)):
        ax.bar(x + i * width, [values.get(c, np.nan) for c in categories], width, label=name, color=colour)
    ax.set_xticks(x + width * (len(series) - 1) / 2, categories, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _png(fig)


def memorization_curves(runs: dict[str, dict]) -> bytes:
    """Exact-continuation rate against times seen, model (solid) and control (dashed)."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for (name, memo), colour in zip(runs.items(), COLOURS * 10):
        buckets = list(memo.get("by_times_seen", {}))
        if not buckets:
            continue
        values = memo["by_times_seen"]
        ax.plot(buckets, [values[b]["exact"] for b in buckets], "o-", color=colour, label=f"{name}")
        ax.plot(buckets, [values[b]["control_exact"] for b in buckets], "x--", color=colour, alpha=0.6, label=f"{name} control")
    ax.set(xlabel="times the text was seen in training", ylabel="exact 32-token continuation", title="Memorization vs times seen", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
