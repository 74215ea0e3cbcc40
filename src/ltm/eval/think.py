"""Thinking longer: a self-looped model (model.loop_core_layers) evaluated at chosen numbers of loop
steps at inference, the recurrent-depth models' question (does running the core more often help?).

At each number of steps r the model's held-out bits per byte (overall on plain text, by document and
by language), the fact set's QA and the cloze are measured as `ltm eval` measures them, with the
model's think_steps set to r for the duration; the rest of `ltm eval` (memorization, probes) does
not depend on the question and is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from ltm.config import RunConfig
from ltm.dataset.reader import load_manifest, load_segments, load_split, open_split
from ltm.dataset.tokenizer import load_tokenizer, token_byte_lengths
from ltm.eval.bpb import bits_per_byte, range_mask, token_nll
from ltm.eval.evaluate import EvalError, _cloze, _groups, _qa
from ltm.formats import ClozeResult, GroupBpb, QAResult
from ltm.log import info
from ltm.model.factory import load_model, pick_device
from ltm.model.numerics import eval_autocast


class ThinkPoint(BaseModel):
    """One number of loop steps: the figures `ltm eval` writes under the same names in eval.json."""

    steps: int
    heldout_bpb: float
    heldout_by: dict[str, dict[str, GroupBpb]]  # document, language
    qa: QAResult | None = None
    cloze: ClozeResult | None = None


@contextmanager
def thinking(model, steps: int) -> Iterator[None]:
    """The model runs its loop `steps` times at inference inside the block (config.think_steps)."""
    if not model.config.loop_core_layers:
        raise EvalError("the model has no self-loop (model.loop_core_layers is 0): its depth cannot be chosen")
    saved = model.config.think_steps
    model.config.think_steps = steps
    try:
        yield
    finally:
        model.config.think_steps = saved


def think_curve(config: RunConfig, dataset_dir: str | Path, checkpoint: str | Path, qa: Path | None,
                steps: list[int]) -> list[ThinkPoint]:
    dataset_dir, ec = Path(dataset_dir), config.eval
    manifest = load_manifest(dataset_dir)
    tokenizer = load_tokenizer(dataset_dir / manifest.tokenizer)
    device = pick_device(ec.device)
    model = load_model(checkpoint).to(device).eval()
    heldout, segments = load_split(dataset_dir, manifest, "heldout"), load_segments(dataset_dir, "heldout")
    plain = segments["lens"] == manifest.lenses.index("plain")
    plain_mask = range_mask(len(heldout), segments["start"][plain], segments["end"][plain])
    lengths = token_byte_lengths(tokenizer)
    splits = {"heldout": (heldout, segments), "train": (open_split(dataset_dir, manifest, "train"), load_segments(dataset_dir, "train"))}
    autocast = eval_autocast(ec.precision, config.train.speed.precision, device)
    points = []
    for r in steps:
        with thinking(model, r), autocast:
            nll = token_nll(model, heldout, model.config.max_position_embeddings, batch_size=ec.batch_size, device=device)
            bpb = bits_per_byte(nll, heldout, lengths, plain_mask)[0]
            info(f"{r} loop steps: held-out bits per byte {bpb:.3f}")
            groups = _groups(nll, heldout, lengths, segments, manifest)
            points.append(ThinkPoint(steps=r, heldout_bpb=bpb, heldout_by={k: groups[k] for k in ("document", "language")},
                                     qa=_qa(model, tokenizer, qa, ec, config.seed) if qa is not None else None,
                                     cloze=_cloze(model, tokenizer, manifest, splits, ec, config.seed)))
    return points
