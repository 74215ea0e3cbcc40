"""The optional LLM annotator: an OpenAI-compatible model fills each scene's roles, tension, vector,
loop, questions and backrefs.

Each answer is parsed (code fences and surrounding prose are tolerated), validated against the
`Annotation` model and cached on disk the moment it is valid, so an interrupted run resumes where
it stopped. An invalid answer is sent back with the validation error, up to `config.retries` times;
a scene that still has no valid answer keeps its existing annotation and gets meta["llm_error"].
A request the endpoint refuses as such (400, 413, 422: e.g. too long for the model's context) is
recorded the same way, without retries. Any other endpoint failure (wrong URL, model or key, a
server that stays down after the client's retries) would repeat for every scene, so it stops the
batch with LLMError; the answers received until then stay cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

from pydantic import ValidationError

from ltm.config import LLMConfig
from ltm.formats import Question, Record, Role, Scene, Tension, Vector
from ltm.io import json_problem
from ltm.markup import LOOP_STEPS
from ltm.llm import (
    AnswerCache,
    Answers,
    ChatClient,
    Outcome,
    Prompt,
    Query,
    ask_all,
    language_name,
    load_prompt,
)

PROMPT_NAME = "scene_annotation"
CORRECTION = (
    "Your answer was not valid: {problem}\n"
    "Answer again with ONLY the JSON object, with the keys roles, tension, vector, loop, questions, backrefs."
)
MAX_PROBLEMS = 5  # validation errors quoted back to the model; more would only bury the first


class Annotation(Record):
    """The part of a Scene an annotator fills; an answer must give every key."""

    roles: list[Role]
    tension: Tension
    vector: Vector
    loop: list[Literal[LOOP_STEPS]]  # type: ignore[valid-type]  # the tuple unpacks into the allowed values
    questions: list[Question]
    backrefs: list[str]


ANNOTATION_SCHEMA = Annotation.model_json_schema()


class InvalidAnswer(ValueError):
    """A model's answer that is not a valid annotation; the message is what the model is told."""


def parse_answer(content: str) -> Annotation:
    """The outermost {...} of the answer, validated; raises InvalidAnswer saying what is wrong."""
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end < start:
        raise InvalidAnswer("the answer holds no JSON object")
    try:
        data = json.loads(content[start : end + 1])
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"not valid JSON: {json_problem(exc)}") from None
    try:
        return Annotation.model_validate(data)
    except ValidationError as exc:
        raise InvalidAnswer(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    errors = exc.errors()
    problems = [f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in errors[:MAX_PROBLEMS]]
    if len(errors) > MAX_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return "; ".join(problems)


def annotate_with_llm(
    scenes: list[Scene],
    config: LLMConfig,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    client: ChatClient | None = None,
) -> list[Scene]:
    """New scenes annotated by the model, in input order; `on_progress(done, total)` after each scene.

    `client` lets a caller share one client (built from the same config) or tune its backoff.
    """
    prompt = load_prompt(PROMPT_NAME)
    queries = [Query(AnswerCache.key(scene.text, prompt.version, config.model), scene_prompt(prompt, scene)) for scene in scenes]
    outcomes = ask_all(queries, ANSWERS, config, on_progress, client=client)
    annotator = f"llm:{config.model}:prompt-v{prompt.version}"
    return [_apply(scene, outcome, annotator) for scene, outcome in zip(scenes, outcomes)]


def scene_prompt(prompt: Prompt, scene: Scene) -> str:
    """The prompt filled with the scene's text and the name of its language."""
    return prompt.render(text=scene.text, language=language_name(scene.lang))


def _load(value: dict) -> Annotation | None:
    try:
        return Annotation.model_validate(value)
    except ValidationError:  # stored under an older Annotation model: ask again
        return None


ANSWERS: Answers[Annotation] = Answers(
    parse=parse_answer,
    correction=lambda problem: CORRECTION.format(problem=problem),
    gave_up="no valid answer in {attempts} attempts: {problem}",
    load=_load,
    dump=lambda annotation: annotation.model_dump(mode="json"),
)


def _apply(scene: Scene, outcome: Outcome[Annotation], annotator: str) -> Scene:
    meta = {k: v for k, v in scene.meta.items() if k != "llm_error"}  # an earlier run's failure is outdated
    if outcome.answer is None:
        return scene.model_copy(update={"meta": {**meta, "llm_error": outcome.problem}})
    return scene.model_copy(update={**dict(outcome.answer), "annotator": annotator, "meta": meta})
