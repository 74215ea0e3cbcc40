"""Language detection good enough to route text to the ru or en tools: script counts plus stopwords."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+")
# The most frequent English function words; Latin-script text without them is some other language.
_EN_STOPWORDS = frozenset(
    "the of and to a in is it that was he for on are as with his they i at be this have from or one had by"
    " but not what all were we when your can said there an which she do their if will up other about out"
    " them then so these her would make like him into has more no could my than been who its now you".split()
)


def detect_language(text: str, sample_chars: int = 20000) -> str:
    """Return 'ru', 'en' or 'other' from the first `sample_chars` characters."""
    sample = text[:sample_chars]
    cyrillic = sum(1 for ch in sample if "\u0400" <= ch <= "\u04ff")
    latin = sum(1 for ch in sample if ch.isascii() and ch.isalpha())
    if cyrillic == 0 and latin == 0:
        return "other"
    if cyrillic > latin:
        return "ru"
    words = [w.lower() for w in _WORD.findall(sample) if w.isascii()]
    if words and sum(w in _EN_STOPWORDS for w in words) / len(words) > 0.15:
        return "en"
    return "other"
