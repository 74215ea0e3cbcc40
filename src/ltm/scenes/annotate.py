"""The minimal annotator: speakers and questions read straight off the text.

It fills `roles` (speaker labels such as "THEON:" or "User:") and `questions` (sentences ending
in a question mark); tension, vector and loop keep their neutral defaults.
"""

from __future__ import annotations

import re

from ltm.formats import Question, Role

ANNOTATOR = "paragraph-v0"

# A speaker label opens a line: an upper-case name ("THEON:") or a chat role ("User:", "Ассистент:").
_SPEAKER = re.compile(
    r"^(?P<name>[A-ZА-ЯЁ][A-ZА-ЯЁ .'-]{1,30}|User|Assistant|Пользователь|Ассистент):\s",
    re.MULTILINE,
)
_QUESTION = re.compile(r"[^.!?…\n]*\?")


def speakers(text: str) -> list[Role]:
    names = dict.fromkeys(m.group("name").strip() for m in _SPEAKER.finditer(text))
    return [Role(name=name, function="speaker") for name in names]


_SECOND_PERSON = re.compile(r"\b(you|your|ты|вы|тебя|вас|тебе|вам|твой|ваш)\b", re.IGNORECASE)


def questions(text: str) -> list[Question]:
    found = (q.strip(" \t\"«»—-") for q in _QUESTION.findall(text))
    return [Question(text=q, kind="addressed" if _SECOND_PERSON.search(q) else "self") for q in found if len(q) > 1]
