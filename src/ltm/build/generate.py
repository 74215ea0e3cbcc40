"""Texts for the generative lenses (commentary, analogy, paraphrase), written by an LLM.

The same endpoint, client, answer cache and error policy as the LLM annotator
(ltm.scenes.llm_annotate): one request per scene on at most `config.concurrency` threads; each
valid answer is cached as {"text": ...} the moment it arrives, keyed by the scene text, the prompt
(name and version: the three lens prompts must not share answers) and the model, so a rerun asks
only for what is missing. The model answers in plain text; a code fence around the whole answer and
surrounding whitespace are stripped. An empty answer is sent back with a correction, up to
`config.retries` times. A scene that never gets a text, or whose request the endpoint refuses as
such (400, 413, 422), is left out of the result and reported in `errors`. Any other endpoint
failure raises LLMError; the answers received until then stay cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from ltm.build.lenses import GENERATIVE_LENSES
from ltm.config import LLMConfig
from ltm.formats import Scene
from ltm.llm import AnswerCache, ChatClient, LLMError, Prompt, load_prompt, map_bounded
from ltm.scenes.llm_annotate import LANGUAGES, REFUSED_REQUEST, UNKNOWN_LANGUAGE

CORRECTION = "Your answer was empty. Answer again with only the text that was asked for, as plain prose."
_FENCED = re.compile(r"\A```[^\n]*\n(.*?)\n?```\Z", re.DOTALL)


class _Outcome(NamedTuple):
    text: str | None
    problem: str | None  # why there is no text


def generate_lens_texts(
    scenes: list[Scene],
    lens: str,
    config: LLMConfig,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    client: ChatClient | None = None,
    errors: list[str] | None = None,
) -> dict[str, str]:
    """scene_id -> the model's text for `lens`, for every scene that got one, in input order.

    Each scene left out is reported in `errors` (when a list is given) as "SCENE_ID: why", in input
    order. `on_progress(done, total)` is called after each scene; `client` lets a caller share one.
    """
    if lens not in GENERATIVE_LENSES:
        raise ValueError(f"lens {lens!r} is not generated; generative lenses: {', '.join(GENERATIVE_LENSES)}")
    prompt = load_prompt(f"lens_{lens}")
    cache = AnswerCache(config.cache_dir)
    chat = client or ChatClient(config)
    try:
        outcomes = map_bounded(lambda scene: _generate_one(scene, chat, cache, prompt, config), scenes, config.concurrency, on_progress)
    finally:
        if client is None:
            chat.close()
    texts: dict[str, str] = {}
    for scene, outcome in zip(scenes, outcomes):
        if outcome.text is not None:
            texts[scene.scene_id] = outcome.text
        elif errors is not None:
            errors.append(f"{scene.scene_id}: {outcome.problem}")
    return texts


def clean_answer(content: str) -> str:
    """The answer without surrounding whitespace or a code fence around all of it."""
    content = content.strip()
    fenced = _FENCED.match(content)
    return fenced.group(1).strip() if fenced else content


def _generate_one(scene: Scene, client: ChatClient, cache: AnswerCache, prompt: Prompt, config: LLMConfig) -> _Outcome:
    key = cache.key(scene.text, f"{prompt.name}:{prompt.version}", config.model)
    cached = _from_cache(cache, key)
    if cached is not None:
        return _Outcome(cached, None)
    text = prompt.render(text=scene.text, language=LANGUAGES.get(scene.lang, UNKNOWN_LANGUAGE))
    try:
        answer = _ask(client, [{"role": "user", "content": text}], config.retries)
    except LLMError as exc:
        if exc.status not in REFUSED_REQUEST:
            raise
        return _Outcome(None, str(exc))
    if answer is None:
        return _Outcome(None, f"no answer in {config.retries + 1} attempts: every answer was empty")
    cache.put(key, {"text": answer})
    return _Outcome(answer, None)


def _from_cache(cache: AnswerCache, key: str) -> str | None:
    value = cache.get(key)
    text = value.get("text") if value is not None else None
    return text if isinstance(text, str) and text.strip() else None  # anything else is asked again


def _ask(client: ChatClient, messages: list[dict], retries: int) -> str | None:
    """The first non-empty answer, asking again with a correction after an empty one; None if none came."""
    for _ in range(retries + 1):
        content = client.complete(messages)
        answer = clean_answer(content)
        if answer:
            return answer
        messages = [*messages, {"role": "assistant", "content": content}, {"role": "user", "content": CORRECTION}]
    return None
