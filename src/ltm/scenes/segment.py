"""The scene segmenter: structure first, length second, topic in between.

A dialogue (a document whose text is its turns rendered) is cut into its turns, one scene per
turn however long, so the build can write each as one chat message (build.dialogue). Otherwise:

1. Blocks (paragraphs, see structure.py) and the rule at each gap between them:
   - a cut is required before a heading (a chapter title starts the scene it titles), before a
     letter (its date line or salutation), before a chat turn, after a separator ("* * *"), and at
     section starts and scene breaks from ingest;
   - no cut is allowed right after a heading, a section number, a date line or a salutation, nor
     before what ends the block before it: a signature or closing formula (a short paragraph), a
     "P. S.", a paragraph that goes on with a sentence the previous one left open, or what
     follows a colon;
   - elsewhere a cut is allowed, and each such gap gets a score (below).
2. A block longer than `max_tokens` is read as its sentences (razdel, so "т. д." and "Mr." do not
   end one); a cut between them is allowed but costs more than a cut between paragraphs. Only a
   sentence longer than `max_tokens` is cut inside, at a semicolon, colon, dash or comma before a
   space. Markdown spans (bold, italics, code, links) are never cut, and a fenced code block is one
   block.
3. The score of an allowed gap: how far the topic shifts there (TextTiling depth, see tiling.py,
   above the document's own cutoff), plus what the structure says: a numbered section starts
   there; a stage direction, or a change of time or place ("На другой день"); dialogue begins or
   ends there. Inside a run of dialogue lines a cut costs, since an exchange is best kept whole.
4. The cuts: between required cuts, the set of allowed cuts with the highest total score, under
   the length limits (dynamic programming): every scene at most `max_tokens` words (a single
   block longer than that, a code block, stays whole) and at least `min_tokens` unless the
   structure leaves less room (a short letter, a chat turn).

Spans index the document text exactly; scenes cover it in order, leaving out only blank lines and
separator lines.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from ltm.formats import Document
from ltm.scenes.lexicon import builtin_lexicon
from ltm.scenes.sentences import count_tokens, sentence_spans
from ltm.scenes.structure import (
    DATE, DIRECTION, HEADING, POSTSCRIPT, SALUTATION, SECTION, SEPARATOR, SPEECH, TERMINAL, TURN, Block, reader,
)
from ltm.scenes.tiling import cutoff, depth_scores, gap_similarities, lower_keeping_offsets, stems

HARD, GLUE, SOFT = "hard", "glue", "soft"
BLOCK_WORDS = 60  # words on each side of a gap that are compared (three pseudo-sentences of 20)
MIN_DEPTH = 0.05  # shallower dips are noise: the same topic, reworded
SHORT_BLOCK = 7  # words: a paragraph this short closes what came before (a signature, "Ваша", a reply)

# The scores of step 3, in units of TextTiling depth; tuned on the development half of the
# labelled set (bench/scenes_quality.py), never on the held-out half.
SCORES = {
    "section": 1.0,  # a numbered section starts here
    "direction": 0.35,  # a stage direction
    "shift": 0.3,  # a change of time or place
    "dialogue_edge": 0.25,  # narration turns to dialogue, or dialogue to narration
    "inside_dialogue": -0.15,  # between two lines of one exchange
    "inside_paragraph": -0.5,  # between two sentences of one paragraph
    "depth_cap": 0.5,  # a valley this deep is a shift of topic whatever the document's other valleys
    "threshold": 0.3,  # a gap scoring above this is worth a cut when the lengths allow it
    "short_scene": 2.0,  # the cost of a scene under min_tokens where the structure does not force one
    "glued": 10.0,  # the cost of a cut where the structure forbids one, taken only when nothing else fits max_tokens
}

# Markdown emphasis hugs its text ("**bold**", "*it*"), so a footnote star before a space ("реакции *.") opens nothing.
_MARKDOWN_SPAN = re.compile(r"\*\*(?=\S)[^*\n]+?(?<=\S)\*\*|__(?=\S)[^_\n]+?(?<=\S)__|`[^`\n]+`|\*(?=\S)[^*\n]+?(?<=\S)\*"
                            r"|\[[^\]\n]*\]\([^)\n]*\)")
_CLAUSE_END = re.compile(r"[;:](?=\s)|\s[–—-]{1,2}(?=\s)|,(?=\s)")
_NONSPACE = re.compile(r"\S+")


@dataclass
class Unit:
    """A paragraph, or one sentence of a paragraph longer than max_tokens."""

    start: int
    end: int
    tokens: int
    gap: str = SOFT  # the rule for the gap before this unit
    score: float = 0.0  # the score of that gap when it is SOFT


# --- units and the rules at their gaps -----------------------------------------------------------


def _gap_rule(text: str, previous: Block | None, block: Block, following: Block | None) -> str:
    if previous is None:
        return HARD
    body = text[block.start : block.end]
    before = text[previous.start : previous.end]
    title = previous.kind == HEADING or (previous.kind == SECTION and len(before.split()) <= SHORT_BLOCK)
    if previous.kind == SEPARATOR or (block.kind == TURN and not title):
        return HARD
    if block.kind == HEADING and previous.kind != HEADING:
        return HARD
    if block.kind == SALUTATION and previous.kind not in (DATE, HEADING):
        return HARD
    if block.kind == DATE and following is not None and following.kind == SALUTATION and previous.kind != HEADING:
        return HARD
    if title or previous.kind == SALUTATION or (previous.kind == DATE and block.kind == SALUTATION):
        return GLUE  # a title, a section number, a salutation belong to what follows
    if block.kind in (POSTSCRIPT, DATE) or before.rstrip().endswith(":"):
        return GLUE
    if block.kind not in (SPEECH, DIRECTION, SECTION) and len(body.split()) <= SHORT_BLOCK and "?" not in body:
        return GLUE
    if before.rstrip().endswith((",", ";")) or (not TERMINAL.search(before) and (body[:1].islower() or body[:1] in "«“\"'–—-")):
        return GLUE  # the sentence goes on across the paragraph break
    if block.kind == SECTION and len(body.split()) <= 1 and not TERMINAL.search(before):
        return GLUE  # a page number inside a sentence ("…таким торжественным / 367 / спокойствием…")
    return SOFT


def _units(doc: Document, max_tokens: int) -> list[Unit]:
    text = doc.text
    chat = doc.turns is not None
    cuts = sorted(set(doc.breaks) | {s.start for s in doc.sections})
    blocks = reader(doc.lang).blocks(text, chat)
    units: list[Unit] = []
    previous: Block | None = None
    title_page = True  # only short lines so far (author, title, epigraph lines): they open the first scene
    for i, block in enumerate(blocks):
        if block.kind == SEPARATOR:
            previous = block
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        rule = _gap_rule(text, previous, block, following)
        if title_page and rule == HARD and previous is not None and block.kind == HEADING:
            rule = GLUE
        title_page = title_page and all(len(line.split()) <= SHORT_BLOCK for line in text[block.start : block.end].split("\n"))
        after = bisect_right(cuts, previous.end if previous else -1)
        if after < len(cuts) and cuts[after] <= block.start:
            rule = HARD  # a section start or scene break from ingest falls in the gap
        tokens = count_tokens(text[block.start : block.end])
        code = text[block.start : block.start + 3] in ("```", "~~~")  # a fenced code block stays whole, however long
        pieces = _sentence_pieces(text, block.start, block.end, max_tokens) if tokens > max_tokens and not code else [(block.start, block.end)]
        for k, (s, e) in enumerate(pieces):
            units.append(Unit(s, e, tokens if len(pieces) == 1 else count_tokens(text[s:e]), gap=rule if k == 0 else SOFT,
                              score=_structure_score(previous, block) if k == 0 else SCORES["inside_paragraph"]))
        previous = block
    return units


def _structure_score(previous: Block | None, block: Block) -> float:
    score = 0.0
    if block.kind == SECTION:
        score += SCORES["section"]
    if block.kind == DIRECTION:
        score += SCORES["direction"]
    if block.shift:
        score += SCORES["shift"]
    if previous is not None and previous.kind != SEPARATOR:
        speech_before, speech_now = previous.kind == SPEECH, block.kind == SPEECH
        if speech_before != speech_now:
            score += SCORES["dialogue_edge"]
        elif speech_now:
            score += SCORES["inside_dialogue"]
    return score


def _sentence_pieces(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """A long block as its sentences, never parting a markdown span; a sentence over max_tokens
    is cut at clause ends, and only where there is none, at spaces."""
    protected = [(m.start(), m.end()) for m in _MARKDOWN_SPAN.finditer(text, start, end)]
    pieces: list[tuple[int, int]] = []
    for s, e in sentence_spans(text, start, end):
        if pieces and any(a < s < b for a, b in protected):
            pieces[-1] = (pieces[-1][0], e)
        else:
            pieces.append((s, e))
    out: list[tuple[int, int]] = []
    for s, e in pieces:
        out.extend(_split_sentence(text, s, e, max_tokens) if count_tokens(text[s:e]) > max_tokens else [(s, e)])
    return out


def _split_sentence(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """Pieces of at most max_tokens words, each ending at the last clause end that keeps it so."""
    pieces, piece_start = [], start
    while count_tokens(text[piece_start:end]) > max_tokens:
        words = list(_NONSPACE.finditer(text, piece_start, end))
        limit = words[max_tokens - 1].end()
        clause_ends = [m.end() for m in _CLAUSE_END.finditer(text, piece_start, limit) if m.end() > piece_start]
        cut = clause_ends[-1] if clause_ends else limit
        pieces.append((piece_start, cut))
        piece_start = cut + len(text[cut:end]) - len(text[cut:end].lstrip())
    pieces.append((piece_start, end))
    return [(s, s + len(text[s:e].rstrip())) for s, e in pieces if text[s:e].strip()]


# --- topic shifts ------------------------------------------------------------------------------------


def _add_topic_scores(text: str, units: list[Unit], stop: frozenset[str]) -> None:
    """Each allowed gap gains how far its TextTiling depth passes the document's cutoff."""
    if len(units) < 3:
        return
    lowered = lower_keeping_offsets(text)
    per_unit = [stems(lowered, u.start, u.end, stop) for u in units]
    words = [w for found in per_unit for w in found]
    gaps = np.cumsum([len(found) for found in per_unit])[:-1]
    depths = depth_scores(gap_similarities(words, gaps, BLOCK_WORDS).tolist())
    limit = min(cutoff(depths, MIN_DEPTH), SCORES["depth_cap"])
    for unit, depth in zip(units[1:], depths):
        unit.score += depth - limit  # a gap that is no valley (depth 0) counts as no shift at all


# --- the cuts ------------------------------------------------------------------------------------------


def _best_cuts(units: list[Unit], min_tokens: int, max_tokens: int) -> list[int]:
    """Indices of the units that start a scene: HARD gaps always, GLUE gaps only where nothing
    else keeps a scene within max_tokens, and the SOFT gaps that maximise the total of
    (score - threshold) under the length limits."""
    starts: list[int] = []
    block_start = 0
    for i in range(1, len(units) + 1):
        if i == len(units) or units[i].gap == HARD:
            starts.extend(_best_cuts_in(units, block_start, i, min_tokens, max_tokens))
            block_start = i
    return starts


def _best_cuts_in(units: list[Unit], lo: int, hi: int, min_tokens: int, max_tokens: int) -> list[int]:
    """Dynamic programming over units lo..hi-1 (a scene starts at lo)."""
    prefix = [0]
    for u in units[lo:hi]:
        prefix.append(prefix[-1] + u.tokens)
    n, total = hi - lo, prefix[-1]
    best = [0.0] + [-np.inf] * n  # best[i]: the best total for units lo..lo+i-1 cut into scenes
    back = [0] * (n + 1)
    threshold, short = SCORES["threshold"], SCORES["short_scene"]
    for i in range(1, n + 1):
        for j in range(i - 1, -1, -1):
            length = prefix[i] - prefix[j]
            if length > max_tokens and i - j > 1:
                break
            if best[j] == -np.inf:
                continue
            value = best[j]
            if j > 0:
                value += units[lo + j].score - threshold if units[lo + j].gap == SOFT else -SCORES["glued"]
            if length < min_tokens and total >= min_tokens:
                value -= short * (min_tokens - length) / min_tokens
            if value > best[i]:
                best[i], back[i] = value, j
    cuts, i = [], n
    while i > 0:
        cuts.append(lo + back[i])
        i = back[i]
    return sorted(cuts)


def segment(doc: Document, min_tokens: int, max_tokens: int) -> list[tuple[int, int]]:
    """Return (start, end) spans of the document's scenes, in order."""
    turns = doc.turn_spans()
    if turns is not None:
        return turns
    units = _units(doc, max_tokens)
    if not units:
        return []
    _add_topic_scores(doc.text, units, builtin_lexicon(doc.lang).function_words)
    starts = _best_cuts(units, min_tokens, max_tokens)
    ends = starts[1:] + [len(units)]
    return [(units[s].start, units[e - 1].end) for s, e in zip(starts, ends)]
