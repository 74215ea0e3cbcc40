"""Bytes -> str with the encoding found: BOM, strict UTF-8, UTF-16 without BOM, then
charset-normalizer over a short list of the code pages our users' files actually come in.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from charset_normalizer import from_bytes

from ltm.ingest.raw import ReaderError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Narrowed on purpose: with every code page in play, charset-normalizer picks exotic ones
# (e.g. mac_greek) for short Russian or English files.
LEGACY_CANDIDATES = ["cp1251", "koi8_r", "cp866", "mac_cyrillic", "cp1252", "iso8859_15", "latin_1"]


@dataclass
class Decoded:
    text: str
    encoding: str


def _utf16_without_bom(data: bytes) -> str | None:
    """Latin or Cyrillic text in UTF-16 has a high byte of 0x00 or 0x04 in almost every pair."""
    sample = data[:4000]
    if len(sample) < 4 or len(sample) % 2:
        return None
    even, odd = sample[0::2], sample[1::2]

    def high(half: bytes) -> bool:
        return (half.count(0) + half.count(4)) > 0.9 * len(half) and half.count(0) > 0.1 * len(half)

    if high(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if high(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


def _looks_binary(text: str) -> bool:
    sample = text[:4000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f\v")
    return controls > 0.01 * max(len(sample), 1) + 1


def decode(data: bytes) -> Decoded:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return Decoded(data.decode(name), name)
    utf16 = _utf16_without_bom(data)
    if utf16:
        try:
            text = data.decode(utf16)
            if not _looks_binary(text):
                return Decoded(text, utf16)
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:8192]:
        raise ReaderError("binary file (NUL bytes), not text")
    try:
        decoded = Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        best = from_bytes(data, cp_isolation=LEGACY_CANDIDATES).best()
        if best is None:
            raise ReaderError("no known text encoding decodes it") from None
        decoded = Decoded(str(best), best.encoding)
    if _looks_binary(decoded.text):
        raise ReaderError("binary file (control bytes), not text")
    return decoded
