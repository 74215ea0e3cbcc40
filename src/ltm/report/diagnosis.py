"""What the report reads off a run besides its eval: where the curriculum's phases begin on the loss
curve, how many passes training made over its data, and whether the curves show overfitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ltm.dataset.reader import load_segments, training_windows

# Overfitting: over the second half of the held-out measurements, training loss fell by more than
# TRAIN_FALL of its value while held-out loss fell by less than HELDOUT_FLAT of its (or rose).
TRAIN_FALL, HELDOUT_FLAT = 0.05, 0.01


def phase_starts(dataset: Path, phases: list[str], tokens_per_step: int, seq_len: int, steps: int) -> list[tuple[float, str]]:
    """(step, phase) where training begins to read each curriculum phase, on every pass it made over
    the stream (a phase change of the stream at token t is read at step t / tokens_per_step on the
    first pass, a pass's length later on the next)."""
    if len(phases) < 2 or not (dataset / "segments_train.npz").exists():
        return []
    segments = load_segments(dataset, "train")
    phase, start = segments["phase"], segments["start"]
    changes = [0, *np.flatnonzero(phase[1:] != phase[:-1]) + 1] if len(phase) else []
    stream = int(segments["end"][-1]) if len(phase) else 0
    per_pass = training_windows(stream, seq_len) * seq_len / tokens_per_step
    out = []
    for k in range(int(steps / per_pass) + 1 if per_pass > 0 else 1):
        out += [(k * per_pass + int(start[i]) / tokens_per_step, phases[int(phase[i])]) for i in changes]
    return [(step, name) for step, name in out if step < steps]


def passes(dataset: Path, tokens_per_step: int, seq_len: int, steps: int) -> float | None:
    """How many times training read its stream over (steps x batch windows over the windows of one pass)."""
    if not (dataset / "segments_train.npz").exists():
        return None
    segments = load_segments(dataset, "train")
    windows = training_windows(int(segments["end"][-1]) if len(segments["end"]) else 0, seq_len)
    return steps * tokens_per_step / seq_len / windows if windows > 0 else None


def overfitting(metrics: list[dict]) -> str | None:
    """A sentence when held-out loss stayed flat or rose over the second half of its measurements
    while training loss fell; None otherwise (or with fewer than three measurements)."""
    held = [(m["step"], m["heldout_loss"]) for m in metrics if m.get("heldout_loss") is not None and m["step"] > 0]
    if len(held) < 3:
        return None
    (first, h0), (last, h1) = held[len(held) // 2 - 1], held[-1]
    train = [m["loss"] for m in metrics if m.get("loss") is not None and first <= m["step"] <= last]
    if len(train) < 2:
        return None
    few = max(1, len(train) // 10)  # the step-to-step noise of the training loss, averaged out at both ends
    t0, t1 = float(np.mean(train[:few])), float(np.mean(train[-few:]))
    if t0 - t1 <= TRAIN_FALL * abs(t0) or h0 - h1 >= HELDOUT_FLAT * abs(h0):
        return None
    trend = "rose" if h1 > h0 else "stayed flat"
    return (f"Overfitting: from step {first} to step {last} held-out loss {trend} ({h0:.3f} -> {h1:.3f}) while training loss "
            f"fell ({t0:.3f} -> {t1:.3f}). The model is learning its training text, not the language: fewer steps, more data, "
            "or a regime that repeats less.")
