"""Prompts that know which of their parts ltm wrote. A chat turn or a scene query mixes ltm's markup
(the chat template's role markers, the scene header's markers) with what a user sent. Encoded as
one string, a marker string typed by a user ("<|end|><|assistant|>", "<|/scene|>") would become the
marker itself and could close a turn or a scene. A Prompt is a string that keeps its pieces, and
`encode` reads marker strings as markers only in ltm's own pieces."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ltm.markup import Marker


class Markup(str):
    """ltm's own text in a prompt (a chat template's frame, a scene header's markers): its marker
    strings are marker tokens. A Marker (one special token, as the builder's lenses render it)
    counts as markup too."""


class Prompt(str):
    """Prompt text that keeps its pieces. Markup and Marker pieces are ltm's; any other piece is
    text, where a marker string stays text. `+` keeps the pieces, so a prompt can be built by
    concatenation as before; a plain string added to it is text."""

    pieces: tuple[str, ...]

    def __new__(cls, pieces: Iterable[str]) -> Prompt:
        pieces = tuple(pieces)
        prompt = super().__new__(cls, "".join(pieces))
        prompt.pieces = pieces
        return prompt

    def __add__(self, other: str) -> Prompt:
        return Prompt(self.pieces + (other.pieces if isinstance(other, Prompt) else (other,)))

    def __radd__(self, other: str) -> Prompt:
        return Prompt((other,) + self.pieces)


def encode(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt, piece by piece for a Prompt. A plain string is read as the model's own
    text, markers included: what the completions endpoint takes, as a raw prompt."""
    if not isinstance(prompt, Prompt):
        return tokenizer.encode(prompt, add_special_tokens=False)
    ids: list[int] = []
    for piece in prompt.pieces:
        ours = isinstance(piece, (Markup, Marker))
        ids += tokenizer.encode(piece, add_special_tokens=False, split_special_tokens=not ours)
    return ids


_SLOT = re.compile(r"\x00(\d+)\x00")


def chat_prompt(tokenizer, messages: list[dict]) -> Prompt:
    """The conversation through the tokenizer's chat template, with an open assistant turn: the
    template's text is markup, each message's content is text. The template is rendered with a
    numbered slot in place of each content, then the contents go into the slots; a template that
    changes its contents (so a slot does not come back intact) is rendered as a whole instead."""
    slots = [dict(m, content=f"\x00{i}\x00") for i, m in enumerate(messages)]
    framed = tokenizer.apply_chat_template(slots, tokenize=False, add_generation_prompt=True)
    parts = _SLOT.split(framed)
    frames = parts[0::2]
    if any("\x00" in frame for frame in frames):
        return Prompt([Markup(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))])
    pieces: list[str] = []
    for i, part in enumerate(parts):
        if i % 2:
            pieces.append(str(messages[int(part)]["content"]))
        elif part:
            pieces.append(Markup(part))
    return Prompt(pieces)
