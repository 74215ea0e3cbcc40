"""The heuristic annotator (the default, no model needed): roles, tension, questions, loop steps,
a vector hint and back-references, read off the text with marker lexicons (ltm/data/lexicons).

Every rule is a plain pattern a reader can check; bench/annotate_quality.py measures it against
a labelled set.
"""

from __future__ import annotations

import re

from ltm.formats import Question, Role, Tension, Vector
from ltm.scenes.lexicon import Lexicon
from ltm.scenes.sentences import rough_sentence_spans
from ltm.scenes.speakers import LEADING_LABEL, quoted_voice, speaker_names

ANNOTATOR = "heuristic-v1"

_EDGE = " \t\n\"'«»“”„—–-"
_QUESTION_MARK = re.compile(r"\?[?!.…]*")
_DIALOGUE_LINE = re.compile(r"\s*(?:[–—―]|--?\s|[«“„\"])")  # a paragraph that is a line of dialogue, not a quotation in one
_QUOTED_SPAN = re.compile(r"«[^»]*»|“[^”]*”|„[^“”]*[“”]|\"[^\"\n]*\"")


def speakers(text: str, lex: Lexicon) -> list[Role]:
    return [Role(name=name, function="speaker") for name in speaker_names(text, lex)]


def _containing(spans: list[tuple[int, int]], position: int) -> int | None:
    """Start of the span that holds `position`, if any."""
    for start, end in spans:
        if start <= position < end:
            return start
    return None


def questions(text: str, lex: Lexicon, dialogue: bool) -> list[Question]:
    """Every question: the stretch of text that ends in a question mark, starting at its sentence,
    its line, its quotation mark or the previous question, whichever comes last."""
    if "?" not in text:
        return []
    sentences = rough_sentence_spans(text)
    quotes = list(_QUOTED_SPAN.finditer(text))
    found, previous_end = [], 0
    for mark in _QUESTION_MARK.finditer(text):
        end = mark.start() + 1
        start = max(previous_end, text.rfind("\n", 0, mark.start()) + 1, _containing(sentences, mark.start()) or 0)
        quote = next((q for q in quotes if q.start() < mark.start() < q.end()), None)
        if quote is not None:
            inner = rough_sentence_spans(text, quote.start() + 1, quote.end() - 1)
            start = max(start if start > quote.start() else 0, _containing(inner, mark.start()) or quote.start() + 1)
        previous_end = mark.end()
        question = LEADING_LABEL.sub("", text[start:end].strip(_EDGE + "?!.…")).strip(_EDGE)
        if len(question) > 1:
            question += "?"
            found.append(Question(text=question, kind=_question_kind(question, lex, dialogue or quote is not None)))
    return found


def _question_kind(question: str, lex: Lexicon, dialogue: bool) -> str:
    question = question.lower()
    if lex.has("addressee_pronouns", question):
        return "addressed"
    if lex.has("self_pronouns", question):
        return "self"
    return "addressed" if dialogue else "self"


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
        for quote in _QUOTED_SPAN.finditer(paragraph):
            before = paragraph[max(0, quote.start() - 60) : quote.start()]
            after = re.split(r"(?<=[.!?…])\s", paragraph[quote.end() : quote.end() + 40])[0]
            name = quoted_voice(before, after, lex)
            if name:
                names.append(name)
    return list(dict.fromkeys(names))


def tension(low: str, lex: Lexicon, markers: dict) -> Tension:
    contrasts = markers["contrast"]
    pairs = lex.opposite_pairs(low)
    score = len(contrasts) + 2 * len(pairs)
    level = "low" if score == 0 else "medium" if score <= 2 else "high"
    if pairs:
        poles = list(pairs[0])
    elif contrasts:
        m = contrasts[0]
        before = re.findall(r"\w+", low[: m.start()])[-3:]
        after = re.findall(r"\w+", low[m.end() :])[:3]
        poles = [" ".join(before), " ".join(after)] if before and after else []
    else:
        poles = []
    return Tension(poles=poles if level != "low" else [], level=level)


STEP_KEYS = (("claim", "claim"), ("doubt", "doubt"), ("inversion", "inversion"), ("new_direction", "new direction"))


def loop(markers: dict) -> list[str]:
    """Loop steps present in the scene, in the order they first appear."""
    firsts = [(markers[key][0].start(), step) for key, step in STEP_KEYS if markers[key]]
    return [step for _, step in sorted(firsts)]


def vector(text: str, low: str, markers: dict, asked: list[Question]) -> Vector:
    match = (markers["new_direction"] or markers["direction"] or [None])[0]
    if match:
        # Lower-casing keeps offsets except for a few letters (İ); then quote the lower-case text.
        source = text if len(text) == len(low) else low
        for s, e in rough_sentence_spans(source):
            if s <= match.start() < e:
                return Vector(direction=_shorten(source[s:e]), hint="explicit")
    if asked:
        return Vector(direction=_shorten(asked[-1].text), hint="latent")
    return Vector()


def _shorten(sentence: str, words: int = 14) -> str:
    parts = sentence.strip(_EDGE).split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def backrefs(markers: dict) -> list[str]:
    return list(dict.fromkeys(m.group().strip() for m in markers["backrefs"]))


def annotate(text: str, lex: Lexicon) -> dict:
    """Every annotation field for one scene's text."""
    low = text.lower()
    markers = lex.markers(low)
    found_roles = roles(text, low, lex, markers)
    dialogue = any(r.function == "speaker" for r in found_roles)
    asked = questions(text, lex, dialogue)
    return {
        "roles": found_roles,
        "tension": tension(low, lex, markers),
        "questions": asked,
        "loop": loop(markers),
        "vector": vector(text, low, markers, asked),
        "backrefs": backrefs(markers),
        "annotator": ANNOTATOR,
    }
