"""Who speaks in a scene, from the signals the text gives: speaker labels ("THEON:", "User:"), and
the author's words around a line of dialogue, where a verb of saying stands next to a name:

    – Что ж это такое? – засмеялся Иван.            (Russian dash dialogue)
    “No,” said Glaucon.  /  Yes, said Polemarchus   (quoted or Plato's unquoted dialogue)
    Glaucon said: …  /  – …, – Алеша рассказал …    (the name before the verb)

A speaker is named by a capitalised word that is not a function word (with a second capitalised
word, a patronymic or surname, kept: "Федор Павлович"), or by a designation from the lexicon
("сказал князь", "said the youth"). A pronoun ("сказал я", "he said") names nobody, and the
words after a preposition ("обратился к Марье") name the addressee, not the speaker.
"""

from __future__ import annotations

import re
from bisect import bisect_left

from ltm.scenes.lexicon import Lexicon
from ltm.scenes.structure import reader_for

# A speaker label: an upper-case name ("THEON:") or a chat role ("User:", "Ассистент:").
_LABEL_NAME = r"[A-ZА-ЯЁ][A-ZА-ЯЁ'-]{1,20}(?: [A-ZА-ЯЁ][A-ZА-ЯЁ'-]{1,20})?|User|Assistant|Пользователь|Ассистент|Human"
LABEL = re.compile(rf"(?:^|(?<=[.!?…»\"”]\s))(?P<name>{_LABEL_NAME})\s*:\s", re.MULTILINE)
LEADING_LABEL = re.compile(rf"^\s*(?:{_LABEL_NAME})\s*:\s*")
_DASH_LINE = re.compile(r"^\s*(?:[–—―]|--?)\s", re.MULTILINE)
# An author's insert in dash dialogue: after speech that ends in punctuation, a dash, then words
# up to the next dash or the end of the paragraph.
_INSERT = re.compile(r"[,.!?…]\s*(?:[–—―]|--)\s+([^–—―\n]+?)(?=\s*(?:[–—―]|--)\s|\n|$)")
_QUOTE = re.compile(r"«[^»\n]*»|“[^”\n]*”|„[^“”\n]*[“”]|\"[^\"\n]*\"")
_TOKEN = re.compile(r"[\w'’-]+|[^\w\s]")
_STOP_AFTER = frozenset({"к", "ко", "to", "at", "upon", "towards", "toward", "на"})  # the addressee follows
# After these only a capitalised name can be the speaker ("проговорил с засверкавшими глазами Алеша");
# a common noun is the preposition's object ("asked from the doorway", "asked into the dark").
_PREPOSITIONS = frozenset({"с", "со", "в", "во", "из", "от", "у", "за", "под", "над", "про", "о", "об", "через", "из-за",
                           "from", "in", "into", "with", "by", "through", "across", "over", "under", "behind", "of", "for", "on"})
_SUBJECT_PRONOUNS = frozenset({"я", "ты", "он", "она", "оно", "мы", "вы", "они", "i", "you", "he", "she", "it", "we", "they"})
# An object after the verb ("asked him where his master was", "сказал ему"): what follows is not the speaker.
_OBJECT_PRONOUNS = frozenset({"меня", "мне", "тебя", "тебе", "его", "ему", "её", "ее", "ей", "нас", "нам", "вас", "вам", "их", "им",
                              "me", "him", "her", "us", "them"})
_DETERMINERS = frozenset({"the", "my", "our", "his", "her", "their", "мой", "моя", "наш", "наша", "его", "её"})
WINDOW = 6  # words after a verb of saying searched for its subject
ATTRIBUTION = 80  # characters before and after a quotation searched for the words that attribute it


def speaker_names(text: str, lexicon: Lexicon) -> list[str]:
    """Names of the scene's speakers, in order of first appearance, one name per speaker."""
    found = [m.group("name").strip() for m in LABEL.finditer(text)]
    for paragraph in re.split(r"\n\s*\n", text):
        if LEADING_LABEL.match(paragraph):
            continue  # a labelled line is its speaker's; a verb of saying inside it reports someone else
        for words in _attributions(paragraph, lexicon):
            name = _subject(words, lexicon)
            if name:
                found.append(name)
    return _one_per_speaker(found)


def _attributions(paragraph: str, lexicon: Lexicon) -> list[str]:
    """The stretches of author's words that may name the speaker of a line of dialogue."""
    stretches = [m.group(1) for m in _INSERT.finditer(paragraph)]  # "…, – засмеялся Иван, – …"
    if paragraph.rstrip().endswith(":"):
        stretches.append(re.split(r"(?<=[.!?…])\s", paragraph.rstrip())[-1])  # "…брат Иван закричал ему из окна:"
    quotes = list(_QUOTE.finditer(paragraph))
    for i, quote in enumerate(quotes):  # '"No," said Glaucon' / 'The wind laughed and said, "…"'
        previous_end = quotes[i - 1].end() if i else 0
        following_start = quotes[i + 1].start() if i + 1 < len(quotes) else len(paragraph)
        stretches.append(re.split(r"(?<=[.!?…])\s", paragraph[max(previous_end, quote.start() - ATTRIBUTION) : quote.start()])[-1])
        stretches.append(re.split(r"(?<=[.!?…])\s", paragraph[quote.end() : min(following_start, quote.end() + ATTRIBUTION)])[0])
    if not quotes and not _DASH_LINE.match(paragraph) and reader_for(lexicon).said(paragraph):
        stretches.append(paragraph.split("\n")[0][:200])  # unquoted dialogue: "Yes, said Polemarchus"
    return stretches


def _subject(stretch: str, lexicon: Lexicon, verbs: str = "speech_verbs") -> str | None:
    """The speaker a stretch of author's words names, if one of the `verbs` entries is in it."""
    low = stretch.lower()
    verb_matches = list(lexicon.patterns[verbs].finditer(low))
    if not verb_matches:
        return None
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(stretch)]
    tokens = [stretch[a:b] for a, b in spans]
    lowered = [t.lower() for t in tokens]
    starts = [a for a, _ in spans]
    for verb in verb_matches:
        first = bisect_left(starts, verb.start())
        last = bisect_left(starts, verb.end()) - 1
        after = _name_after(tokens, lowered, last + 1, lexicon)
        if after is not None:
            return after or None  # "" means a pronoun said it
        before = _name_before(tokens, lowered, first, lexicon)
        if before:
            return before
    return None


def quoted_speaker(before: str, after: str, lexicon: Lexicon) -> bool:
    """Whether a quotation is given to someone speaking ("…," they told her / Один спросил: «…»):
    a verb of saying in the author's words right before it (after its sentence's start) or right
    after it (up to the next sentence)."""
    before = re.split(r"[.!?…]\s", before)[-1]
    after = re.split(r"(?<=[.!?…])\s", after)[0]
    return lexicon.has("speech_verbs", before.lower()) or lexicon.has("speech_verbs", after.lower())


def quoted_voice(before: str, after: str, lexicon: Lexicon) -> str | None:
    """Who a quotation inside narration or argument is given to: "my father used to say «…»",
    "«…», – говорил Сократ"; None when no verb of quoting names anyone."""
    return _subject(after, lexicon, "quote_verbs") or _subject(before, lexicon, "quote_verbs")


def _name_after(tokens: list[str], lowered: list[str], start: int, lexicon: Lexicon) -> str | None:
    """The subject after the verb ("засмеялся Иван", "said the youth"); "" for a pronoun; None
    when there is none within WINDOW words."""
    seen = 0
    i = start
    object_follows = False
    while i < len(tokens) and seen < WINDOW:
        word, low = tokens[i], lowered[i]
        if not word[0].isalnum():
            if word in ",;:.!?…":
                return None
            i += 1
            continue
        if low in _SUBJECT_PRONOUNS:
            return ""
        if low in _STOP_AFTER or low in _OBJECT_PRONOUNS:
            return None
        object_follows = object_follows or low in _PREPOSITIONS
        name = _name_at(tokens, lowered, i, lexicon)
        if name and not (object_follows and not name[:1].isupper()):
            return name
        seen += 1
        i += 1
    return None


def _name_before(tokens: list[str], lowered: list[str], verb: int, lexicon: Lexicon) -> str | None:
    """The subject right before the verb ("Glaucon said", "the elders said", "Алеша рассказал")."""
    for back in (1, 2):
        i = verb - back
        if i < 0 or not tokens[i][:1].isalnum():
            return None
        name = _name_at(tokens, lowered, i, lexicon)
        if name:
            if i > 0 and tokens[i - 1][:1].isupper() and lowered[i - 1] not in lexicon.function_words and back == 1:
                return f"{tokens[i - 1]} {name}"  # "Иван Федорович сказал"
            return name
    return None


def _name_at(tokens: list[str], lowered: list[str], i: int, lexicon: Lexicon) -> str | None:
    word, low = tokens[i], lowered[i]
    if low in lexicon.function_words or lexicon.is_entry("speech_verbs", low):
        return None
    if word[:1].isupper() and word[:1].isalpha() and not (len(word) > 1 and word.isupper()):  # "VALUE" is emphasis
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if following[:1].isupper() and following[:1].isalpha() and following.lower() not in lexicon.function_words:
            return f"{word} {following}"
        return word
    if lexicon.is_entry("designations", low) or (i > 0 and lowered[i - 1] in _DETERMINERS and word.isalpha() and word.islower()):
        return word  # "said the youth", "my father used to say": a noun after these names a character
    if low in ("old", "young", "little") and i + 1 < len(tokens) and lexicon.is_entry("designations", f"{low} {lowered[i + 1]}"):
        return f"{word} {tokens[i + 1]}"
    return None


def _one_per_speaker(names: list[str]) -> list[str]:
    """Names that share a word ("Иван", "Иван Федорович") are one speaker, named as first seen."""
    kept: list[str] = []
    for name in names:
        words = set(name.lower().replace("ё", "е").split())
        if not any(words & set(k.lower().replace("ё", "е").split()) for k in kept):
            kept.append(name)
    return kept
