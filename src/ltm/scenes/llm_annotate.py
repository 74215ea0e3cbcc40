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
from ltm.formats import LOOP_STEPS, Question, Record, Role, Scene, Tension, Vector
from ltm.llm import AnswerCache, ChatClient, LLMError, Prompt, load_prompt, map_bounded

PROMPT_NAME = "scene_annotation"
LANGUAGES = {"ru": "Russian", "en": "English"}
UNKNOWN_LANGUAGE = "not identified; use the language the scene is written in"
CORRECTION = (
    "Your answer was not valid: {problem}\n"
    "Answer again with ONLY the JSON object, with the keys roles, tension, vector, loop, questions, backrefs."
)
REFUSED_REQUEST = frozenset({400, 413, 422})  # a problem of this one request, not of the endpoint
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
        raise InvalidAnswer(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
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
    cache = AnswerCache(config.cache_dir)
    annotator = f"llm:{config.model}:prompt-v{prompt.version}"
    chat = client or ChatClient(config)
    try:
        outcomes = map_bounded(lambda scene: _annotate_one(scene, chat, cache, prompt, config), scenes, config.concurrency, on_progress)
    finally:
        if client is None:
            chat.close()
    return [_apply(scene, outcome, annotator) for scene, outcome in zip(scenes, outcomes)]


def _annotate_one(scene: Scene, client: ChatClient, cache: AnswerCache, prompt: Prompt, config: LLMConfig) -> Annotation | str:
    """The scene's annotation, from the cache or the model, or the reason there is none."""
    key = cache.key(scene.text, prompt.version, config.model)
    cached = _from_cache(cache, key)
    if cached is not None:
        return cached
    text = prompt.render(text=scene.text, language=LANGUAGES.get(scene.lang, UNKNOWN_LANGUAGE))
    try:
        outcome = _ask(client, [{"role": "user", "content": text}], config.retries)
    except LLMError as exc:
        if exc.status not in REFUSED_REQUEST:
            raise
        return str(exc)
    if isinstance(outcome, Annotation):
        cache.put(key, outcome.model_dump(mode="json"))
    return outcome


def _from_cache(cache: AnswerCache, key: str) -> Annotation | None:
    value = cache.get(key)
    if value is None:
        return None
    try:
        return Annotation.model_validate(value)
    except ValidationError:  # stored under an older Annotation model: ask again
        return None


def _ask(client: ChatClient, messages: list[dict], retries: int) -> Annotation | str:
    """Ask, and on an invalid answer ask again with the problem pointed out; the last problem if none is valid."""
    for _ in range(retries + 1):
        content = client.complete(messages)
        try:
            return parse_answer(content)
        except InvalidAnswer as exc:
            problem = str(exc)
        messages = [*messages, {"role": "assistant", "content": content}, {"role": "user", "content": CORRECTION.format(problem=problem)}]
    return f"no valid answer in {retries + 1} attempts: {problem}"


def _apply(scene: Scene, outcome: Annotation | str, annotator: str) -> Scene:
    meta = {k: v for k, v in scene.meta.items() if k != "llm_error"}  # an earlier run's failure is outdated
    if isinstance(outcome, str):
        return scene.model_copy(update={"meta": {**meta, "llm_error": outcome}})
    return scene.model_copy(update={**dict(outcome), "annotator": annotator, "meta": meta})
