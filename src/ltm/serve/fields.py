"""What every request body shares: its text must be valid Unicode, and a seed is a 64-bit integer.

JSON can carry a lone surrogate ("\ud800"), which Python keeps in a str but nothing downstream can
encode (the tokenizer, the memory files, nor pydantic's own error messages): such a body is refused
before it is validated (ltm.serve.guard for JSON, ltm.serve.pvq for YAML), naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

# OpenAI's seed is an int64; torch takes any 64-bit value, so a seed is used modulo 2**64.
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1, description="a 64-bit integer")]

_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs, so any left is alone


def lone_surrogate(value, where: str = "") -> str | None:
    """Where in a parsed JSON value (strings, keys, lists, mappings) a lone surrogate sits, or None."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return f"{where or 'body'}: a lone surrogate U+{ord(found.group()):04X} at character {found.start()} is not Unicode text" if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            place = f"{where}.{key}" if where else str(key)
            if (problem := lone_surrogate(str(key), place) or lone_surrogate(item, place)) is not None:
                return problem
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (problem := lone_surrogate(item, f"{where}[{i}]")) is not None:
                return problem
    return None
