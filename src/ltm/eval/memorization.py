"""Extractable memorization as Carlini et al. (2023) and Pythia (Biderman et al. 2023) define it:
a 32-token prefix taken from the training data, greedy decoding, and whether the model reproduces
the exact 32-token continuation (also: the fraction of the 32 tokens it gets right).

Sequences are sampled by *times seen* — how many times training read that scene: each time the
build put it into the training stream (the manifest's provenance) counted once per pass training
made over that stream (a unique build trained for 24 epochs reads each text 24 times) — so
memorization can be read against repetition, and the same sequences go to a control model (the
same network untrained, or another run's model).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ltm.dataset.reader import repetition_bucket
from ltm.eval.likelihood import continuation_logprobs
from ltm.eval.sample import continuations

PREFIX = SUFFIX = 32


@dataclass
class Sample:
    sequences: np.ndarray  # (n, PREFIX + SUFFIX) token ids
    buckets: list[str]  # the times-seen bucket of each sequence
    rows: list[int]  # the segment row each sequence starts


def sample_sequences(tokens: np.ndarray, segments: dict[str, np.ndarray], per_bucket: int, seed: int,
                     reads: np.ndarray | None = None) -> Sample:
    """Up to `per_bucket` sequences of 64 tokens per times-seen bucket, each from the start of a
    scene occurrence long enough to hold one (the first occurrence of its scene, so every bucket
    samples distinct texts). `reads`: how many times training read each segment (training_reads);
    None: once each."""
    key = segments["doc"] * 100_000 + segments["scene"]
    times: defaultdict[int, int] = defaultdict(int)
    for k, n in zip(key, np.ones(len(key), dtype=np.int64) if reads is None else reads):
        times[int(k)] += int(n)
    first: dict[int, int] = {}
    for row, k in enumerate(key):
        if segments["end"][row] - segments["start"][row] >= PREFIX + SUFFIX:
            first.setdefault(int(k), row)
    by_bucket: dict[str, list[int]] = defaultdict(list)
    for k, row in first.items():
        by_bucket[repetition_bucket(times[k])].append(row)
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for name in sorted(by_bucket, key=lambda b: int(b.split("-")[0])):
        chosen = rng.permutation(by_bucket[name])[:per_bucket]
        rows.extend(int(r) for r in chosen)
        labels.extend([name] * len(chosen))
    sequences = np.stack([np.asarray(tokens[segments["start"][r] : segments["start"][r] + PREFIX + SUFFIX], dtype=np.int64) for r in rows]) \
        if rows else np.zeros((0, PREFIX + SUFFIX), dtype=np.int64)
    return Sample(sequences, labels, rows)


def extraction(model, sequences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact, token_match) per sequence: greedy continuation of the prefix (ltm.eval.sample's
    batched decoding), compared with the true suffix."""
    generated = continuations(model, sequences[:, :PREFIX].tolist(), SUFFIX, 0.0, None, None, seed=0)
    exact, matched = np.zeros(len(sequences), dtype=bool), np.zeros(len(sequences))
    for i, (row, truth) in enumerate(zip(generated, sequences[:, PREFIX:])):
        same = np.asarray(row, dtype=np.int64) == truth[: len(row)]
        exact[i], matched[i] = len(row) == SUFFIX and bool(same.all()), same.sum() / SUFFIX
    return exact, matched


def loss_gap(model, drawn: Sample, train_langs: list[str], heldout_tokens: np.ndarray, heldout_segments: dict[str, np.ndarray],
             heldout_langs: np.ndarray, plain_lens: int, seed: int, batch_size: int) -> dict[str, dict]:
    """Teacher-forced loss (nats per token) of the drawn training sequences by times seen, next to
    held-out sequences of the same length, language and place (a scene's start, plain), one drawn
    for each training sequence: the gap is what reading a text that often bought on that text."""
    length = drawn.sequences.shape[1]
    starts = heldout_segments["start"]
    usable = (heldout_segments["lens"] == plain_lens) & (heldout_segments["end"] - starts >= length)
    by_lang: dict[str, list[int]] = {}
    for row in np.flatnonzero(usable):
        by_lang.setdefault(str(heldout_langs[row]), []).append(int(row))
    if not by_lang:
        return {}
    rng = np.random.default_rng(seed)
    matched = []
    for lang in train_langs:  # a language without held-out windows borrows from all
        rows = by_lang.get(lang) or [r for rows in by_lang.values() for r in rows]
        matched.append(np.asarray(heldout_tokens[starts[rows[rng.integers(len(rows))]]:][:length], dtype=np.int64))
    held = np.stack(matched) if matched else np.zeros((0, length), dtype=np.int64)
    both = np.concatenate([drawn.sequences, held])
    logprob, count = continuation_logprobs(model, both[:, :1].tolist(), both[:, 1:].tolist(), batch_size)
    nll = -logprob / count
    train_nll, heldout_nll = nll[: len(drawn.sequences)], nll[len(drawn.sequences):]
    labels = np.asarray(drawn.buckets)
    out = {}
    for name in dict.fromkeys(drawn.buckets):
        rows = labels == name
        out[name] = {"n": int(rows.sum()), "train_nll": float(train_nll[rows].mean()), "heldout_nll": float(heldout_nll[rows].mean()),
                     "gap": float(heldout_nll[rows].mean() - train_nll[rows].mean())}
    return out


def summarize(sample: Sample, exact: np.ndarray, matched: np.ndarray, control_exact: np.ndarray, control_matched: np.ndarray) -> dict:
    labels = np.asarray(sample.buckets)
    by_bucket = {}
    for name in dict.fromkeys(sample.buckets):
        rows = labels == name
        by_bucket[name] = {"n": int(rows.sum()), "exact": float(exact[rows].mean()), "token_match": float(matched[rows].mean()),
                           "control_exact": float(control_exact[rows].mean()), "control_token_match": float(control_matched[rows].mean())}
    overall = {"n": int(len(exact)), "exact": float(exact.mean()) if len(exact) else 0.0,
               "token_match": float(matched.mean()) if len(matched) else 0.0,
               "control_exact": float(control_exact.mean()) if len(exact) else 0.0,
               "control_token_match": float(control_matched.mean()) if len(matched) else 0.0}
    return {"prefix_tokens": PREFIX, "suffix_tokens": SUFFIX, "overall": overall, "by_times_seen": by_bucket}
