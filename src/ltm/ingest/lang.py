"""Language detection good enough to route text to the ru or en tools: script counts, then
function words, so Latin-script text that is not English comes out as 'other'."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+")
_NOT_RUSSIAN = re.compile("[ђјљњћџіїєґўѓќѕ]")
_EN_STOPWORDS = frozenset(
    "the of and to a in is it that was he for on are as with his they i at be this have from or one had by"
    " but not what all were we when your can said there an which she do their if will up other about out"
    " them then so these her would make like him into has more no could my than been who its now you".split()
)
_RU_STOPWORDS = frozenset(
    "и в не на я что он с как а то все она так его но да ты к у же вы за бы по только ее мне было вот от"
    " меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до вас нибудь"
    " опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для мы тебя их чем была"
    " сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот того потому этого какой совсем ним".split()
)


def detect_language(text: str, sample_chars: int = 5000) -> str:
    """Return 'ru', 'en' or 'other' from the first `sample_chars` characters."""
    words = [w.lower() for w in _WORD.findall(text[:sample_chars])]
    if not words:
        return "other"
    cyrillic = sum(1 for w in words if "\u0400" <= w[0] <= "\u04ff")
    if cyrillic > len(words) / 2:
        # Letters Russian lacks mark Serbian, Ukrainian, Belarusian, Macedonian, ... text.
        if sum(1 for w in words if _NOT_RUSSIAN.search(w)) > 0.02 * cyrillic:
            return "other"
        return "ru" if sum(w in _RU_STOPWORDS for w in words) / len(words) > 0.08 else "other"
    if sum(w in _EN_STOPWORDS for w in words) / len(words) > 0.12:
        return "en"
    return "other"
