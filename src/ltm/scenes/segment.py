"""The scene segmenter: cut a document into scenes that follow the text's own movement.

- Dialogues (documents with turns): a scene per turn, whole however long, so a turn trains in the
  chat form as one message (build.dialogue). A dialogue whose text is not its turns rendered
  (a hand-edited file) is cut at each "User: "/"Assistant: " paragraph, a long turn like prose.
- Prose: paragraphs are grouped while the topic holds and cut where it shifts. The shift is found
  TextTiling-style (Hearst 1997): at each paragraph gap, the cosine similarity of the words just
  before and just after; a gap's depth is how far it dips below the peaks on either side, and
  gaps deeper than mean - std/2 are topic boundaries.
- Length, in words: a scene is not cut before `min_tokens`, and is always cut before it would pass
  `max_tokens` (at the deepest gap that leaves the first part at least `min_tokens`). A paragraph
  longer than `max_tokens` is cut at sentence ends, a sentence longer than that at spaces.
- Section starts and scene breaks from ingest are always cuts.

Spans index the document text exactly; scenes cover it in order, leaving out only the blank lines
between paragraphs.
"""

from __future__ import annotations

import math
import re
import zlib
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ltm.formats import Document
from ltm.scenes.sentences import count_tokens, rough_sentence_spans

_PARAGRAPH = re.compile(r"[^\n]+(?:\n(?!\n)[^\n]*)*")  # runs of non-blank lines
_TURN_START = re.compile(r"(?:User|Assistant): ")
_WORD = re.compile(r"\w{3,}")
_NONSPACE = re.compile(r"\S+")
BLOCK_WORDS = 60  # words on each side of a gap that are compared (three pseudo-sentences of 20)


@dataclass
class Unit:
    start: int
    end: int
    tokens: int
    hard: bool = False  # a cut is required before this unit
    depth: float = 0.0  # TextTiling depth of the gap before this unit


def _split_by_tokens(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """Cut at spaces so that each piece has at most max_tokens words."""
    pieces, piece_start, count = [], start, 0
    for match in _NONSPACE.finditer(text, start, end):
        if count == max_tokens:
            pieces.append((piece_start, match.start()))
            piece_start, count = match.start(), 0
        count += 1
    pieces.append((piece_start, end))
    return [(s, e) for s, e in ((s, len(text[s:e].rstrip()) + s) for s, e in pieces) if e > s]


def _split_long(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """A paragraph over max_tokens: groups of whole sentences, or token pieces of a giant sentence."""
    pieces: list[tuple[int, int]] = []
    for s, e in rough_sentence_spans(text, start, end):
        n = count_tokens(text[s:e])
        if n > max_tokens:
            pieces.extend(_split_by_tokens(text, s, e, max_tokens))
        elif pieces and count_tokens(text[pieces[-1][0] : e]) <= max_tokens and pieces[-1][1] <= s:
            pieces[-1] = (pieces[-1][0], e)
        else:
            pieces.append((s, e))
    return pieces


def _units(doc: Document, max_tokens: int) -> list[Unit]:
    text = doc.text
    cuts = sorted(set(doc.breaks) | {s.start for s in doc.sections})
    chat = doc.turns is not None
    units: list[Unit] = []
    previous_end = -1
    for match in _PARAGRAPH.finditer(text):
        start, end = match.start(), match.end()
        if not text[start:end].strip():
            continue
        # A cut applies when a section start or scene break falls in the gap before this paragraph.
        after = bisect_right(cuts, previous_end)
        hard = after < len(cuts) and cuts[after] <= start
        if chat and _TURN_START.match(text, start):
            hard = True
        previous_end = end
        tokens = count_tokens(text[start:end])
        pieces = _split_long(text, start, end, max_tokens) if tokens > max_tokens else [(start, end)]
        for i, (s, e) in enumerate(pieces):
            units.append(Unit(s, e, count_tokens(text[s:e]) if len(pieces) > 1 else tokens, hard=hard and i == 0))
    return units


def _gap_similarities(text: str, units: list[Unit]) -> np.ndarray:
    """Cosine similarity, at each gap between units, of the BLOCK_WORDS words before it and the
    BLOCK_WORDS after it, as bags of words. As in Hearst's TextTiling, the blocks are made of
    pseudo-sentences (runs of words) rather than parsed sentences; the first five letters of a word
    stand in for its stem, since Russian inflection changes endings. Sparse products, no loops."""
    low = text.lower()
    per_unit = [_WORD.findall(low, unit.start, unit.end) for unit in units]
    words = [w[:5] for found in per_unit for w in found]
    if not words:
        return np.zeros(len(units) - 1)
    hashes = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint32, count=len(words))
    ids = np.unique(hashes, return_inverse=True)[1].ravel()
    n_words, vocab = len(ids), int(ids.max()) + 1
    gaps = np.cumsum([len(found) for found in per_unit])[:-1]  # word index where each gap falls
    offsets = np.arange(BLOCK_WORDS)

    def block(positions: np.ndarray) -> sparse.csr_matrix:
        gap_of = np.repeat(np.arange(len(gaps)), BLOCK_WORDS)
        positions = positions.ravel()
        keep = (positions >= 0) & (positions < n_words)
        return sparse.csr_matrix((np.ones(keep.sum()), (gap_of[keep], ids[positions[keep]])), shape=(len(gaps), vocab))

    left = block(gaps[:, None] - 1 - offsets)
    right = block(gaps[:, None] + offsets)
    dot = np.asarray(left.multiply(right).sum(axis=1)).ravel()
    norms = np.sqrt(np.asarray(left.multiply(left).sum(axis=1)).ravel() * np.asarray(right.multiply(right).sum(axis=1)).ravel())
    return np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)


def _depth_scores(text: str, units: list[Unit]) -> None:
    """Fill unit.depth at each valley of the similarity curve (a gap no more similar than its
    neighbours): how far it dips below the peaks on either side. Other gaps keep depth 0, so a
    slow drift of topic makes one cut at its lowest point, not one at every paragraph."""
    if len(units) < 3:
        return
    gaps = _gap_similarities(text, units).tolist()
    for g, score in enumerate(gaps):
        if (g > 0 and gaps[g - 1] < score) or (g + 1 < len(gaps) and gaps[g + 1] < score):
            continue
        left_peak = score
        for other in reversed(gaps[:g]):
            if other < left_peak:
                break
            left_peak = other
        right_peak = score
        for other in gaps[g + 1 :]:
            if other < right_peak:
                break
            right_peak = other
        units[g + 1].depth = (left_peak - score) + (right_peak - score)


MIN_DEPTH = 0.05  # shallower dips are noise: the same topic, reworded


def _boundary_cutoff(units: list[Unit]) -> float:
    """Hearst's cutoff, mean - std/2 over the valleys' depths."""
    depths = [u.depth for u in units[1:] if u.depth > 0]
    if not depths:
        return math.inf
    mean = sum(depths) / len(depths)
    std = math.sqrt(sum((d - mean) ** 2 for d in depths) / len(depths))
    return max(mean - std / 2, MIN_DEPTH)


def segment(doc: Document, min_tokens: int, max_tokens: int) -> list[tuple[int, int]]:
    """Return (start, end) spans of the document's scenes, in order."""
    turns = doc.turn_spans()
    if turns is not None:
        return turns
    units = _units(doc, max_tokens)
    if not units:
        return []
    _depth_scores(doc.text, units)
    cutoff = _boundary_cutoff(units)
    scenes: list[list[Unit]] = []
    current: list[Unit] = []

    def total(group: list[Unit]) -> int:
        return sum(u.tokens for u in group)

    for unit in units:
        if current and unit.hard:
            scenes.append(current)
            current = []
        elif current and total(current) >= min_tokens and unit.depth >= cutoff:
            scenes.append(current)
            current = []
        while current and total(current) + unit.tokens > max_tokens:
            # Forced cut: the deepest gap inside `current` that leaves at least min_tokens before it.
            candidates = [j for j in range(1, len(current)) if total(current[:j]) >= min_tokens]
            j = max(candidates, key=lambda k: current[k].depth) if candidates else len(current)
            scenes.append(current[:j])
            current = current[j:]
        current.append(unit)
    if current:
        scenes.append(current)
    return [(group[0].start, group[-1].end) for group in scenes]
