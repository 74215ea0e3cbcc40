"""Questions in a scene and whom each is put to: `self` (the thinker asks themselves, or asks
nobody: a rhetorical question in an essay) or `addressed` (asked of another).

The text of a question is the stretch that ends in a question mark, starting at its sentence, its
line, its quotation mark or the previous question, whichever comes last. Its kind, first rule
that applies:

1. words of asking oneself just before it, in it ("I keep asking myself: am I wrong?") or in the
   author's words after it ("…? – спросила она себя") -> self;
2. a word of address set off by commas ("…, Варенька?", "Toby?", "Gentlemen, …") -> addressed;
3. a second-person pronoun in the question -> addressed;
4. the question is part of a line of dialogue (a dash or quotation mark first, a speaker label, a
   chat turn, "said X") -> addressed, unless it is a first-person question the speaker quotes;
   a quotation given to a speaker by a verb of saying -> addressed;
5. its paragraph speaks to someone (two or more second-person pronouns: a letter, an address to
   the reader) -> addressed;
6. otherwise (first person, or a rhetorical question in narration or argument) -> self.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from ltm.formats import Question
from ltm.scenes.lexicon import Lexicon
from ltm.scenes.sentences import rough_sentence_spans
from ltm.scenes.speakers import LEADING_LABEL, quoted_speaker
from ltm.scenes.structure import SPEECH, TURN, reader_for

EDGE = " \t\n\"'«»“”„—–-"
_QUESTION_MARK = re.compile(r"\?[?!.…]*")
QUOTED_SPAN = re.compile(r"«[^»]*»|“[^”]*”|„[^“”]*[“”]|\"[^\"\n]*\"")
_PARAGRAPH = re.compile(r"[^\n]+(?:\n(?!\n)[^\n]*)*")
# A capitalised word set off as an address: "…, Варенька?", "Wind, where…", "…, Макар Алексеевич?"
_CAPITAL_ADDRESS = re.compile(r"(?:^|,\s*)([A-ZА-ЯЁ][\w'-]+(?:\s+[A-ZА-ЯЁ][\w'-]+)?)\s*(?=,|$)")
CONTEXT = 80  # characters around a question searched for words of asking oneself
_REFLEXIVE = re.compile(r"\b(?:себя|себе|myself|himself|herself|themselves|ourselves|yourself|oneself)\b")


def questions(text: str, lex: Lexicon) -> list[Question]:
    if "?" not in text:
        return []
    sentences = rough_sentence_spans(text)
    quotes = list(QUOTED_SPAN.finditer(text))
    paragraphs = [(m.start(), m.end()) for m in _PARAGRAPH.finditer(text)]
    found, previous_end = [], 0
    dialogue: dict[int, bool] = {}  # paragraph start -> is it a line of dialogue (read once per paragraph)
    for mark in _QUESTION_MARK.finditer(text):
        end = mark.start() + 1
        start = max(previous_end, text.rfind("\n", 0, mark.start()) + 1, _containing(sentences, mark.start()) or 0)
        quote = next((q for q in quotes if q.start() < mark.start() < q.end()), None)
        if quote is not None:
            inner = rough_sentence_spans(text, quote.start() + 1, quote.end() - 1)
            start = max(start if start > quote.start() else 0, _containing(inner, mark.start()) or quote.start() + 1)
        previous_end = mark.end()
        question = LEADING_LABEL.sub("", text[start:end].strip(EDGE + "?!.…")).strip(EDGE)
        if len(question) > 1:
            i = max(bisect_right(paragraphs, (mark.start(), float("inf"))) - 1, 0)
            p_start, p_end = paragraphs[i] if paragraphs else (0, len(text))
            if p_start not in dialogue:
                dialogue[p_start] = reader_for(lex).kind(text[p_start:p_end], chat=False) in (SPEECH, TURN)
            kind = _kind(text, question, mark.start(), (p_start, p_end), dialogue[p_start], quote, lex)
            found.append(Question(text=question + "?", kind=kind))
    return found


def _containing(spans: list[tuple[int, int]], position: int) -> int | None:
    """Start of the span (of sorted, disjoint spans) that holds `position`, if any."""
    i = bisect_right(spans, (position, float("inf"))) - 1
    return spans[i][0] if i >= 0 and spans[i][0] <= position < spans[i][1] else None


def _kind(text: str, question: str, mark: int, paragraph: tuple[int, int], dialogue: bool, quote: re.Match | None,
          lex: Lexicon) -> str:
    low = question.lower()
    start = mark - len(question)
    before = text[max(paragraph[0], start - CONTEXT) : max(paragraph[0], start)].lower()
    after = text[mark + 1 : min(paragraph[1], mark + CONTEXT)].lower()
    attribution = re.match(r"[?!.…»”\"']*\s*[,–—-]", after)  # "…?» – спросила она себя"
    if lex.has("self_address", before) or (attribution and lex.has("self_address", after.split(".")[0])):
        return "self"
    if any(_REFLEXIVE.search(m.group()) for m in lex.find("self_address", low)):
        return "self"  # "I keep asking myself: am I wrong?"
    if _addresses(question, lex):
        return "addressed"
    if lex.has("addressee_pronouns", low):
        return "addressed"
    body = text[paragraph[0] : paragraph[1]]
    if dialogue:
        if quote is not None and not _starts_with_quote(body) and lex.has("self_pronouns", low):
            return "self"  # a question a speaker quotes in the first person: "doubt asks 'what if I'm wrong?'"
        return "addressed"
    if quote is not None and quoted_speaker(text[max(0, quote.start() - 60) : quote.start()], text[quote.end() : quote.end() + 40], lex):
        return "addressed"
    if len(lex.find("addressee_pronouns", body.lower())) >= 2:
        return "addressed"
    return "self"


def _addresses(question: str, lex: Lexicon) -> bool:
    """A word of address set off by commas or standing last: a name, or a vocative from the lexicon."""
    for match in _CAPITAL_ADDRESS.finditer(question):
        words = match.group(1)
        first_word = match.start(1) == 0
        if words.split()[0].lower() in lex.function_words or (first_word and not question[match.end(1) :].lstrip().startswith(",")):
            continue
        return True
    for part in re.split(r"[,;:!.]", question.lower()):
        if part.strip() and lex.is_entry("vocatives", part.strip()):
            return True
    return False


def _starts_with_quote(paragraph: str) -> bool:
    return paragraph.lstrip()[:1] in "«“„\""
