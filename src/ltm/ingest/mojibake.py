"""Undo mojibake: UTF-8 text once decoded with a single-byte code page and saved again as UTF-8.

`–¥–æ–ø—É—Å—Ç–∏–º` is `допустим` whose UTF-8 bytes were read as Mac Roman. Each line is tried
alone (so a file damaged in places is repaired in places): re-encode the line with the suspected
code page, decode the bytes as UTF-8, and keep the result when it decodes cleanly and reads better.
A line that does not decode whole (a clean arrow beside the damage) is repaired word by word, since
UTF-8 never puts an ASCII space inside a character. Lines are composed (NFC) first: macOS tools
store text decomposed, and Mac Roman's 'Ä' as 'A' + a combining mark is in no code page.
ftfy 6.3.1 does not repair the Mac Roman case, which is why this module exists. What still looks
like mojibake after the repair is counted by `mojibake_pairs`, so ingest can warn about it.
"""

from __future__ import annotations

import re
import unicodedata

# Tried in this order; the first code page whose repair reads best wins.
CODEPAGES = ("cp1252", "latin_1", "mac_roman", "cp1251")

# Characters that are rare in clean text but fill mojibake: Latin-1 letters with accents that
# pair with a following symbol, box and currency signs, C1 controls, Mac Roman's math symbols.
# The Cyrillic part is the letters cp1251 puts at 0x80-0xBF (Ђ, ѓ, Љ, ґ, ...), which is where the
# second byte of every Russian letter lands when its UTF-8 is read as cp1251.
_SUSPECT = re.compile(r"[\u0080-\u00bf\u00c2-\u00c3\u00d0-\u00d1\u0192\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u2122\u2013\u2014\u00ac\u221a\u2206\u2260\u2264\u2265\u03c0\u2202\u220f\u2211\u222b\u0131\u02c6-\u02dd\u0402-\u040f\u0452-\u045f\u0490\u0491]")
# Only lines holding a character outside ASCII, Cyrillic and common typography can be mojibake;
# one regex pass over the text finds them.
_CANDIDATE_LINE = re.compile(r"^[^\n]*[^\x00-\x7f\u0400-\u04ff\u00a0«»—–…“”„‘’№][^\n]*$", re.MULTILINE)


def _encode_sloppy(line: str, codepage: str) -> bytes | None:
    """Encode, letting a C1 control character through as its own byte: that is what a lenient
    decoder made of the bytes the code page leaves undefined (cp1252's 0x81, 0x8D, 0x8F, 0x90, 0x9D)."""
    try:
        return line.encode(codepage)
    except UnicodeEncodeError:
        pass
    out = bytearray()
    for ch in line:
        try:
            out += ch.encode(codepage)
        except UnicodeEncodeError:
            if 0x80 <= ord(ch) <= 0x9F:
                out.append(ord(ch))
            else:
                return None
    return bytes(out)


def _badness(text: str) -> int:
    return len(_SUSPECT.findall(text)) + 3 * sum(1 for ch in text if unicodedata.category(ch) in ("Cc", "Co", "Cn") and ch not in "\t\n")


def repair_line(line: str) -> tuple[str, str | None]:
    """Return (line, code page it was repaired from) or (line, None) when it needs no repair."""
    composed = unicodedata.normalize("NFC", line)
    fixed, page = _repair_whole(composed)
    if page is None and " " in composed:
        # A word that decodes as UTF-8 into fewer characters is damage even where it reads no
        # better by the count of suspect characters ('‚Äî' -> '—').
        words = [_repair_whole(word, ties=True) for word in composed.split(" ")]
        pages = [page for _, page in words if page]
        if pages:
            return " ".join(word for word, _ in words), max(set(pages), key=pages.count)
    return (fixed, page) if page else (line, None)


def _repair_whole(line: str, ties: bool = False) -> tuple[str, str | None]:
    best, best_page, best_score = line, None, _badness(line) + ties
    for page in CODEPAGES:
        raw = _encode_sloppy(line, page)
        if raw is None or raw.isascii():
            continue
        try:
            fixed = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        score = _badness(fixed)
        # A real repair makes the line shorter (two or three mojibake characters become one).
        if score < best_score and len(fixed) < len(line):
            best, best_page, best_score = fixed, page, score
    if best_page is not None:
        # Twice-mangled text needs a second pass.
        again, page2 = _repair_whole(best)
        if page2 is not None:
            return again, best_page
    return best, best_page


def repair(text: str) -> tuple[str, list[str]]:
    """Repair line by line; return the text and the repairs made, e.g. ['mojibake:mac_roman x12 lines']."""
    counts: dict[str, int] = {}

    def fix(match: re.Match) -> str:
        fixed, page = repair_line(match.group())
        if page:
            counts[page] = counts.get(page, 0) + 1
        return fixed

    text = _CANDIDATE_LINE.sub(fix, text)
    return text, [f"mojibake:{page} ({n} lines)" for page, n in sorted(counts.items())]


def _pairs(codepage: str, exclude: str = "") -> re.Pattern:
    """A UTF-8 lead byte (Cyrillic's 0xD0/0xD1, Latin-1's 0xC2/0xC3, punctuation's 0xE2) followed by
    a continuation byte (0x80-0xBF), both as `codepage` shows them."""
    lead = bytes([0xC2, 0xC3, 0xD0, 0xD1, 0xE2]).decode(codepage)
    follow = "".join(ch for ch in bytes(range(0x80, 0xC0)).decode(codepage, errors="ignore") if ch not in exclude)
    return re.compile(f"[{re.escape(lead)}][{re.escape(follow)}]")


# cp1251 shows the leads as Russian letters (В, Г, Р, С, в) and the continuations include Russian
# typography, so its clean-text pairs (letter + guillemet, dash, ё) are left out.
_LEFT_PAIRS = re.compile("|".join(p.pattern for p in (
    _pairs("mac_roman"), _pairs("cp1252"), _pairs("latin_1"), _pairs("cp1251", exclude="«»—–…“”„‘’ \u00a0№ёЁ"))))
MOJIBAKE_WARN_PAIRS = 5  # a handful could be real text (a name, a formula); more is damage


def mojibake_pairs(text: str) -> int:
    """How many character pairs of `text` read like a UTF-8 character shown in a single-byte code page."""
    return len(_LEFT_PAIRS.findall(text))
