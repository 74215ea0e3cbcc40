"""What each paragraph of a document is, read off its form: the structure the segmenter respects.

A document's text is read as blocks: paragraphs (runs of non-blank lines), except that a fenced
code block stays one block across its blank lines, and heading lines at the end of a paragraph
("…Ив. Тургенев / Ночь первая") become a block of their own. Each block gets one kind:

- heading: a chapter or part title ("IV / Бунт", "CHAPTER I. …", "Часть первая", "PREFACE",
  "# Title"); a scene starts with it.
- section: a numbered section ("9", "1. The Will to Truth…") or a heading inside a chat reply; a
  scene starts there once the scene before it is long enough.
- date, salutation: the head of a letter ("Апреля 8.", "Милостивая государыня, Варвара Алексеевна!").
- postscript: "P. S. …", which belongs to the letter before it.
- turn: a chat turn ("User: …", "Assistant: …").
- speech: a line of dialogue (a dash or quotation mark first, a speaker label "THEON:", or a
  verb of saying in its first clause: "Yes, said Glaucon").
- direction: a bracketed aside on its own ("[MAREN stops taping.]"), as stage directions are.
- separator: "* * *" and the like; no scene holds it.
- plain: everything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ltm.scenes.lexicon import Lexicon, builtin_lexicon

PLAIN, HEADING, SECTION, DATE, SALUTATION, POSTSCRIPT = "plain", "heading", "section", "date", "salutation", "postscript"
TURN, SPEECH, DIRECTION, SEPARATOR = "turn", "speech", "direction", "separator"

_PARAGRAPH = re.compile(r"[^\n]+(?:\n(?!\n)[^\n]*)*")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
# Headings and sections.
_ROMAN = r"[IVXLCDM]{1,7}"
_ROMAN_LINE = re.compile(rf"{_ROMAN}\.?(?:\s+\S.*)?")  # "IV", "V. The Grand Inquisitor"
_NUMBER_LINE = re.compile(r"\d{1,3}\.?")  # a section number alone
_NUMBERED_SECTION = re.compile(r"\d{1,3}\.\s+[\"“«(_A-ZА-ЯЁ]")  # a numbered aphorism
_MARKDOWN_HEADING = re.compile(r"#{1,6}\s+\S")
_SEPARATOR = re.compile(r"(?:\*\s*){3,}|(?:[-—_=~]\s*){3,}|(?:[*·•]\s+)+[*·•]")  # "* * *", "———"
# Who speaks.
_TURN = re.compile(r"(?:User|Assistant|Human|AI|System|Пользователь|Ассистент|Система):\s")
_LABEL = re.compile(r"[A-ZА-ЯЁ][A-ZА-ЯЁ'-]{1,20}(?: [A-ZА-ЯЁ][A-ZА-ЯЁ'-]{1,20})?:\s")  # "THEON: "
_DASH = re.compile(r"(?:[–—―]|--?)\s")  # Russian dialogue opens with a dash
_QUOTE_FIRST = re.compile(r"[«“„\"]")
# Letters and the rest.
_BRACKETED = re.compile(r"\[[^\[\]]*\]|\([^()]*\)")
_POSTSCRIPT = re.compile(r"(?:P\.?\s?P\.?\s?S|P\.?\s?S|Р\.?\s?S|П\.?\s?С)\.?(?:\s|$)")
_WORDS = re.compile(r"[\w'-]+")
_DIGITS = re.compile(r"\d{1,4}")
HEADING_WORDS = 12  # a heading line is short
SUBTITLE_WORDS, SUBTITLE_FOLLOWED_BY = 7, 20
TERMINAL = re.compile(r"[.!?…»\"”)\]*_`]\s*$")  # a paragraph that ends a sentence ends with one of these
SHORT_LINE_CHARS = 80


@dataclass(frozen=True)
class Block:
    start: int
    end: int
    kind: str
    shift: bool = False  # its first words change time or place ("На другой день", "Meanwhile")


class Reader:
    """Classifies blocks with one language's words (heading words, months, salutations, verbs of saying)."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        verbs = lexicon.alternation("speech_verbs")
        # A verb of saying in a paragraph's first clause: "Yes, said Glaucon", "Certainly, he replied",
        # "Polemarchus said to me: ..." (dialogue without quotation marks, as in Plato).
        # A verb followed by a colon introduces the next quotation rather than ending this line.
        self._said = re.compile(rf"^[^\n.!?]{{0,160}}?[,;!?]\s+(?:\w+\s+)?{verbs}\b(?![^\n.!?]{{0,30}}:)"
                                rf"|^\w+(?:\s+\w+)?\s+{verbs}\b[^\n.!?:]{{0,20}}:", re.IGNORECASE)
        self._shift = re.compile(rf"(?:(?:и|а|но|and|but)\s+)?{lexicon.alternation('scene_shift')}\b", re.IGNORECASE)

    # --- lines ---------------------------------------------------------------------------------

    def heading_line(self, line: str) -> str | None:
        """HEADING, SECTION or None for one stripped line."""
        if len(line) > SHORT_LINE_CHARS or line.endswith((",", ";", "?")):
            return None
        words = _WORDS.findall(line)
        if not words or len(words) > HEADING_WORDS:
            return None
        if _NUMBER_LINE.fullmatch(line):
            return SECTION
        if _MARKDOWN_HEADING.match(line):
            return HEADING
        if _ROMAN_LINE.fullmatch(line) and (len(words) == 1 or line.split()[0].endswith(".")):
            return HEADING
        first, rest = words[0].lower(), words[1:]
        if self.lexicon.is_entry("heading_titles", " ".join(words[:2]).lower()) or self.lexicon.is_entry("heading_titles", first):
            return HEADING if len(words) <= 3 else None
        if self.lexicon.is_entry("heading_words", first) and rest and (
                re.fullmatch(_ROMAN, rest[0]) or rest[0].isdigit() or self.lexicon.is_entry("ordinals", rest[0])):
            return HEADING
        letters = [c for c in line if c.isalpha()]
        if len(letters) >= 3 and sum(c.isupper() for c in letters) >= 0.8 * len(letters) and not _LABEL.match(line + " "):
            return HEADING
        return None

    def date_line(self, line: str) -> bool:
        """"Апреля 8.", "June 22", "(Париж. 1 марта 1849)": a month and a number, little else."""
        if len(line) > 50:
            return False
        words = _WORDS.findall(line)
        return (len(words) <= 6 and _DIGITS.search(line) is not None
                and any(self.lexicon.is_entry("months", w) for w in words if not w.isdigit()))

    def salutation(self, paragraph: str) -> bool:
        """A short line that opens a letter: "Друг мой Саша,", "Dear Sir,"."""
        if len(paragraph) > SHORT_LINE_CHARS:
            return False
        words = _WORDS.findall(paragraph)
        return (0 < len(words) <= 8 and "\n" not in paragraph.strip() and paragraph.rstrip().endswith(("!", ","))
                and self.lexicon.is_entry("salutations", words[0]))

    # --- blocks --------------------------------------------------------------------------------

    def kind(self, paragraph: str, chat: bool) -> str:
        text = paragraph.strip()
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if _SEPARATOR.fullmatch(text):
            return SEPARATOR
        if _TURN.match(text):
            return TURN
        first = self.heading_line(lines[0])
        if first and len(lines) <= 4 and all(len(_WORDS.findall(line)) <= HEADING_WORDS for line in lines):
            if first == HEADING and chat and _MARKDOWN_HEADING.match(lines[0]):
                return SECTION  # a heading inside a chat reply titles part of a turn, not a chapter
            return first if first == HEADING or len(lines) == 1 else HEADING
        if not chat and _NUMBERED_SECTION.match(text) and len(text.split()) >= 25:
            return SECTION
        if len(lines) == 1 and self.date_line(text):
            return DATE
        if self.salutation(text):
            return SALUTATION
        if _POSTSCRIPT.match(text):
            return POSTSCRIPT
        if _BRACKETED.fullmatch(text):
            return DIRECTION
        if _DASH.match(text) or _QUOTE_FIRST.match(text) or _LABEL.match(text):
            return SPEECH
        if self.said(text):
            return SPEECH
        return PLAIN

    def said(self, paragraph: str) -> bool:
        """A verb of saying in the paragraph's first clause (dialogue without quotation marks)."""
        return self._said.search(paragraph) is not None

    def shift(self, paragraph: str) -> bool:
        return self._shift.match(paragraph.lstrip()) is not None

    def blocks(self, text: str, chat: bool) -> list[Block]:
        found: list[Block] = []
        for start, end in _paragraphs(text):
            for s, e in self._split_trailing_heading(text, start, end):
                body = text[s:e]
                found.append(Block(s, e, self.kind(body, chat), self.shift(body)))
        return [_subtitle(text, block, found[i - 1] if i else None, found[i + 1] if i + 1 < len(found) else None)
                for i, block in enumerate(found)]

    def _split_trailing_heading(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """A paragraph whose last lines are a heading ("…epigraph / Ив. Тургенев / Ночь первая")
        becomes two blocks, so that the heading can start the scene it titles."""
        body = text[start:end]
        if "\n" not in body:
            return [(start, end)]
        offsets = [start] + [start + m.end() for m in re.finditer(r"\n", body)]
        for i in range(len(offsets) - 1, max(0, len(offsets) - 3), -1):
            line = text[offsets[i] : end].split("\n")[0].strip()
            if self.heading_line(line) == HEADING and not _MARKDOWN_HEADING.match(line):
                cut = offsets[i]
                return [(start, start + len(text[start:cut].rstrip())), (cut, end)]
        return [(start, end)]


def _subtitle(text: str, block: Block, previous: Block | None, following: Block | None) -> Block:
    """A short title-case line with no closing punctuation, after a finished paragraph and before a
    long one ("Мужик Марей", "О том же"), titles what follows: a section."""
    body = text[block.start : block.end].strip()
    if (block.kind == PLAIN and previous is not None and following is not None and len(body.split()) <= SUBTITLE_WORDS
            and "\n" not in body and body[:1].isupper() and not TERMINAL.search(body) and not body.endswith((",", ";", ":"))
            and TERMINAL.search(text[previous.start : previous.end])
            and len(text[following.start : following.end].split()) >= SUBTITLE_FOLLOWED_BY):
        return Block(block.start, block.end, SECTION, block.shift)
    return block


def _paragraphs(text: str) -> list[tuple[int, int]]:
    """Runs of non-blank lines; a fenced code block is kept whole across its blank lines."""
    spans: list[tuple[int, int]] = []
    open_fence = False
    for match in _PARAGRAPH.finditer(text):
        start, end = match.start(), match.end()
        if not text[start:end].strip():
            continue
        fences = len(_FENCE.findall(text, start, end))
        if open_fence and spans:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        open_fence ^= fences % 2 == 1
    return [(s, s + len(text[s:e].rstrip())) for s, e in spans]


@lru_cache(maxsize=None)
def reader(lang: str) -> Reader:
    return Reader(builtin_lexicon(lang))


_READERS: dict[int, tuple[Lexicon, Reader]] = {}


def reader_for(lexicon: Lexicon) -> Reader:
    """The Reader of a given lexicon (a user's extended one included), made once."""
    kept = _READERS.get(id(lexicon))
    if kept is None or kept[0] is not lexicon:
        kept = _READERS[id(lexicon)] = (lexicon, Reader(lexicon))
    return kept[1]
