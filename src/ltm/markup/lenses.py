"""Lenses: the framings under which the spiral regime reads a text again, rendered as pieces.

A rendered scene is a list of pieces, each a `Marker` (a special token the builder inserts by id)
or plain text (encoded by the tokenizer). Every lens opens with SCENE_BEGIN and closes with
SCENE_END, and every lens but `plain` names itself with its lens token right after SCENE_BEGIN.
The passage a lens reads always follows BODY and is followed by SCENE_END or by HEADER, which opens
lens material after it; so the model can always tell the passage from its framing.

Built-in lenses need only the scene:
    plain       [SCENE_BEGIN, text, SCENE_END]: the verbatim text and nothing else
    scene       HEADER, the tension and loop markers and a header in the scene's language, then the text
    questions   HEADER, the scene's questions (or a line saying it asks none), a line handing over, then the text
    critic      a critic's frame, the text, then HEADER and the critic's question
    child       a frame reading the text to a curious child, the text, then HEADER and the child's "why?"
Generative lenses need a text a model wrote for the scene (ltm.dataset.generate):
    commentary  the text, then HEADER and the commentary
    analogy     the text, then HEADER and the analogy
    paraphrase  the paraphrase alone, as the body (a rephrasing read in place of the text)

Framing texts come from ltm/data/lenses/LANG.yaml; a language without a file is framed in English.
A frame with several wordings uses wording `pass_index mod N`, so successive passes read differently
while the same pass always renders the same pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib import resources

import yaml

from ltm.markup import BODY, GENERATIVE_LENSES, HEADER, LENSES, LOOP_TOKENS, SCENE_BEGIN, SCENE_END, TENSION_TOKENS, Marker, lens_token
from ltm.formats import Question, Role, Scene

FRAME_LANGUAGES = ("en", "ru")  # the languages with a file under ltm/data/lenses


def check_lenses(names: list[str]) -> None:
    """Raise ValueError naming every unknown lens, so a config is refused before any work."""
    unknown = [name for name in names if name not in LENSES]
    if unknown:
        raise ValueError(f"unknown lens(es): {', '.join(map(repr, unknown))}; known: {', '.join(LENSES)}")


def render(scene: Scene, lens: str, pass_index: int = 0, generated: str | None = None) -> list[str]:
    """The scene read under `lens` on pass `pass_index`: Marker and text pieces, the same for the same inputs.

    `generated` is the model's text for a generative lens and must be None for a built-in one.
    """
    check_lenses([lens])
    if lens in GENERATIVE_LENSES:
        if generated is None or not generated.strip():
            raise ValueError(f"lens {lens!r} needs a generated text (ltm.dataset.generate), got {generated!r}")
        return _render_generated(scene, lens, generated)
    if generated is not None:
        raise ValueError(f"lens {lens!r} renders the scene alone; generated text fits only {', '.join(GENERATIVE_LENSES)}")
    return _BUILTIN[lens](scene, _frames(scene.lang), pass_index)


# --- built-in lenses -------------------------------------------------------------------------------


def _plain(scene: Scene, frames: dict, pass_index: int) -> list[str]:
    return [Marker(SCENE_BEGIN), scene.text, Marker(SCENE_END)]


def _scene(scene: Scene, frames: dict, pass_index: int) -> list[str]:
    markers = [Marker(HEADER), Marker(TENSION_TOKENS[scene.tension.level])]
    # Loop is free text in the format; only the four known steps have a marker token.
    markers += [Marker(LOOP_TOKENS[step]) for step in scene.loop if step in LOOP_TOKENS]
    header = header_text(scene)
    return _framed("scene", markers + ([header] if header else []), scene.text)


def _questions(scene: Scene, frames: dict, pass_index: int) -> list[str]:
    words = frames["questions"]
    if scene.questions:
        lines = [_pick(words["intro"], pass_index), *_question_lines(scene.questions, frames["scene"]["kinds"])]
    else:
        lines = [_pick(words["none"], pass_index)]
    lines.append(_pick(words["passage"], pass_index))
    return _framed("questions", [Marker(HEADER), "\n".join(lines)], scene.text)


def _reader(lens: str) -> Callable[[Scene, dict, int], list[str]]:
    """A lens that frames the passage with a reader's stance: a frame before, a question after."""

    def render_reader(scene: Scene, frames: dict, pass_index: int) -> list[str]:
        words = frames[lens]
        after = [Marker(HEADER), _pick(words["after"], pass_index)] if words.get("after") else []
        return _framed(lens, [_pick(words["before"], pass_index)], scene.text, after)

    return render_reader


_BUILTIN: dict[str, Callable[[Scene, dict, int], list[str]]] = {
    "plain": _plain,
    "scene": _scene,
    "questions": _questions,
    "critic": _reader("critic"),
    "child": _reader("child"),
}


def _render_generated(scene: Scene, lens: str, generated: str) -> list[str]:
    if lens == "paraphrase":
        return _framed(lens, [], generated)
    return _framed(lens, [], scene.text, [Marker(HEADER), generated])


def _framed(lens: str, before: list[str], body: str, after: list[str] | None = None) -> list[str]:
    return [Marker(SCENE_BEGIN), Marker(lens_token(lens)), *before, Marker(BODY), body, *(after or []), Marker(SCENE_END)]


def _pick(wordings: list[str], pass_index: int) -> str:
    return wordings[pass_index % len(wordings)]


# --- the scene header ------------------------------------------------------------------------------


def header_text(scene: Scene) -> str:
    """The scene's annotation as labelled lines in its language; fields with nothing to say are left out."""
    words = _frames(scene.lang)["scene"]
    fields = [
        ("roles", ", ".join(_role(role, words["functions"]) for role in scene.roles)),
        ("tension", _tension(scene, words["levels"])),
        ("direction", _direction(scene, words["hints"])),
        ("destination", scene.vector.destination or ""),
        ("loop", " → ".join(words["loop_steps"].get(step, step) for step in scene.loop)),
    ]
    lines = [f"{words['labels'][key]}: {value}" for key, value in fields if value]
    if scene.questions:
        lines += [f"{words['labels']['questions']}:", *_question_lines(scene.questions, words["kinds"])]
    return "\n".join(lines)


def _role(role: Role, functions: dict) -> str:
    function = functions.get(role.function, role.function) if role.function else None
    if function is None:
        return role.name
    # The heuristic annotator names unnamed voices by their function ("inner voice"): say it once.
    return function if role.name == role.function else f"{role.name} ({function})"


def _tension(scene: Scene, levels: dict) -> str:
    level = levels[scene.tension.level]
    if scene.tension.poles:
        return f"{' / '.join(scene.tension.poles)} ({level})"
    return "" if scene.tension.level == "low" else level  # a low level without poles says nothing


def _direction(scene: Scene, hints: dict) -> str:
    direction = scene.vector.direction
    if not direction:
        return ""
    hint = hints.get(scene.vector.hint)
    return f"{direction} ({hint})" if hint else direction


def _question_lines(questions: list[Question], kinds: dict) -> list[str]:
    return [f"- {q.text} ({kinds[q.kind]})" for q in questions]


@lru_cache(maxsize=None)
def _frames(lang: str) -> dict:
    name = lang if lang in FRAME_LANGUAGES else "en"
    text = resources.files("ltm").joinpath(f"data/lenses/{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)
