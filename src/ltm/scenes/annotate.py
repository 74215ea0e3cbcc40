"""The heuristic annotator (the default, no model needed): roles, tension, questions, loop steps,
a vector hint and back-references, read off the text with marker lexicons (ltm/data/lexicons).

Every rule is a plain pattern a reader can check; bench/annotate_quality.py measures it against
a labelled set.
"""

from __future__ import annotations

import re

from ltm.formats import Question, Role, Tension, TextSpan, Vector
from ltm.markup import LOOP_STEPS, TENSION_LEVELS
from ltm.scenes.lexicon import Lexicon
from ltm.scenes.sentences import rough_sentence_spans
from ltm.scenes.questions import EDGE, QUOTED_SPAN, questions
from ltm.scenes.speakers import quoted_voice, speaker_names
from ltm.scenes.tiling import lower_keeping_offsets

ANNOTATOR = "heuristic-v2"
# The tension level's weights and cutoffs (see `tension`), fitted on the labelled set's dev half.
LOW, MEDIUM, HIGH = TENSION_LEVELS
TENSION = {"min_words": 60, "pair": 0.5, "exclamation": 0.25, MEDIUM: 0.3, HIGH: 2.0}
EVIDENCE = 8  # evidence spans kept per annotation

_DIALOGUE_LINE = re.compile(r"\s*(?:[–—―]|--?\s|[«“„\"])")  # a paragraph that is a line of dialogue, not a quotation in one


def speakers(text: str, lex: Lexicon) -> list[Role]:
    return [Role(name=name, function="speaker") for name in speaker_names(text, lex)]


def roles(text: str, low: str, lex: Lexicon, markers: dict) -> list[Role]:
    """`low` is `text.lower()`, made once per scene: lexicon patterns are lower-case."""
    found = speakers(text, lex)
    if markers["inner_voice"]:
        found.append(Role(name="inner voice", function="inner voice"))
    if markers["objector"]:
        found.append(Role(name="objector", function="objector"))
    for name in _quoted_voices(text, lex):
        found.append(Role(name=name, function="quoted voice"))
    return found


def _quoted_voices(text: str, lex: Lexicon) -> list[str]:
    """Names given to quotations inside narration or argument; a line of dialogue is a speaker's."""
    names = []
    for paragraph in re.split(r"\n\s*\n", text):
        if _DIALOGUE_LINE.match(paragraph):
            continue
        for quote in QUOTED_SPAN.finditer(paragraph):
            before = paragraph[max(0, quote.start() - 60) : quote.start()]
            after = re.split(r"(?<=[.!?…])\s", paragraph[quote.end() : quote.end() + 40])[0]
            name = quoted_voice(before, after, lex)
            if name:
                names.append(name)
    return list(dict.fromkeys(names))


def tension(low: str, lex: Lexicon, markers: dict) -> Tension:
    """The level from the density of evidence per 100 words (so a long scene is not tense for being
    long, nor a short one for one word): contrast markers, paired opposites and conflict words make
    `medium`; conflict words (anger, despair, violence) with exclamations make `high`. TENSION's
    weights and cutoffs are those that agreed best with the development half of the labelled set
    among those that give `high` about as often as the labels do, there and on the real corpus.
    Poles only from paired opposites; the evidence is every marker counted."""
    contrasts, conflict = markers["contrast"], markers["conflict"]
    pairs = lex.opposite_pairs(low)
    hundreds = max(len(low.split()), TENSION["min_words"]) / 100
    mild = (len(contrasts) + len(conflict)) / hundreds + TENSION["pair"] * len(pairs) / hundreds**0.5
    strong = (len(conflict) + TENSION["exclamation"] * low.count("!")) / hundreds
    level = HIGH if strong >= TENSION[HIGH] else MEDIUM if mild >= TENSION[MEDIUM] else LOW
    if level == LOW:
        return Tension()
    spans = sorted({(m.start(), m.end()) for m in (*contrasts, *conflict, *_pair_matches(low, lex, pairs))})
    return Tension(poles=list(pairs[0]) if pairs else [], level=level,
                   evidence=[TextSpan(start=s, end=e) for s, e in spans[:EVIDENCE]])


def _pair_matches(low: str, lex: Lexicon, pairs: list[tuple[str, str]]) -> list[re.Match]:
    """The first occurrence of each member of the paired opposites found."""
    found = []
    for a, b in pairs:
        for word in (a, b):
            match = re.search(rf"\b{re.escape(word)}\b", low)
            if match:
                found.append(match)
    return found


STEP_KEYS = tuple(zip(("claim", "doubt", "inversion", "new_direction"), LOOP_STEPS))  # lexicon key -> loop step


def loop(markers: dict) -> list[str]:
    """Loop steps present in the scene, in the order they first appear."""
    firsts = [(markers[key][0].start(), step) for key, step in STEP_KEYS if markers[key]]
    return [step for _, step in sorted(firsts)]


def vector(text: str, low: str, lex: Lexicon, asked: list[Question]) -> Vector:
    """`explicit`: the first sentence with a direction phrase ("новое направление", "the next
    step", "leads to"), unless that sentence is a heading or a bracketed aside; `latent`: the last
    question, where the thought is left open. The evidence is that sentence or question."""
    for match in lex.find("direction", low):  # its own scan: a longer loop marker ("this leads") must not hide it
        for s, e in rough_sentence_spans(text):
            if s <= match.start() < e and not _aside(text[s:e]):
                return Vector(direction=_shorten(text[s:e]), hint="explicit", evidence=TextSpan(start=s, end=e))
    if asked:
        body = asked[-1].text[:-1]
        at = text.rfind(body)
        evidence = TextSpan(start=at, end=at + len(body) + 1) if at >= 0 else None
        return Vector(direction=_shorten(asked[-1].text), hint="latent", evidence=evidence)
    return Vector()


def _aside(sentence: str) -> bool:
    """A heading line or a bracketed aside ("[Кухня старого дома.]") says where, not whither."""
    stripped = sentence.strip()
    return stripped[:1] in "[(<{" or stripped.isupper() or "\n" not in sentence and len(stripped.split()) <= 4 and not stripped.endswith((".", "!", "?"))


def _shorten(sentence: str, words: int = 14) -> str:
    parts = sentence.strip(EDGE).split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def backrefs(markers: dict) -> list[str]:
    return list(dict.fromkeys(m.group().strip() for m in markers["backrefs"]))


def annotate(text: str, lex: Lexicon) -> dict:
    """Every annotation field for one scene's text."""
    low = lower_keeping_offsets(text)  # marker offsets are then offsets into `text`
    markers = lex.markers(low)
    found_roles = roles(text, low, lex, markers)
    asked = questions(text, lex)
    return {
        "roles": found_roles,
        "tension": tension(low, lex, markers),
        "questions": asked,
        "loop": loop(markers),
        "vector": vector(text, low, lex, asked),
        "backrefs": backrefs(markers),
        "annotator": ANNOTATOR,
    }
