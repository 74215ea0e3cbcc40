"""Answers from a model, kept on disk so that no question is asked twice.

One small JSON file per answer, FOLDER/ab/cdef....json, named by the sha256 of what determines the
answer (text, prompt version, model). Each answer is written atomically as soon as it arrives, so
an interrupted run loses nothing: a rerun asks only for what is missing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ltm.io import atomic_write


class AnswerCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(text: str, prompt_version: int | str, model: str) -> str:
        # JSON framing keeps ("ab", "c") and ("a", "bc") apart.
        framed = json.dumps([text, str(prompt_version), model], ensure_ascii=False)
        return hashlib.sha256(framed.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key[2:]}.json"

    def get(self, key: str) -> dict | None:
        """The stored answer, or None when there is none (or the file is not a JSON object)."""
        try:
            value = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict) -> None:
        with atomic_write(self.path(key)) as handle:
            json.dump(value, handle, ensure_ascii=False)
