"""Texts for the generative lenses (commentary, analogy, paraphrase), written by an LLM.

The same endpoint, client, answer cache and error policy (ltm.llm.ask) as the LLM annotator
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

from ltm.markup import GENERATIVE_LENSES
from ltm.config import LLMConfig
from ltm.formats import Scene
from ltm.llm import AnswerCache, Answers, ChatClient, Query, ask_all, load_prompt
from ltm.scenes.llm_annotate import scene_prompt

CORRECTION = "Your answer was empty. Answer again with only the text that was asked for, as plain prose."
_FENCED = re.compile(r"\A```[^\n]*\n(.*?)\n?```\Z", re.DOTALL)


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
    # The prompt's name is in the key: the three lens prompts must not share answers.
    version = f"{prompt.name}:{prompt.version}"
    queries = [Query(AnswerCache.key(scene.text, version, config.model), scene_prompt(prompt, scene)) for scene in scenes]
    texts: dict[str, str] = {}
    for scene, outcome in zip(scenes, ask_all(queries, ANSWERS, config, on_progress, client=client)):
        if outcome.answer is not None:
            texts[scene.scene_id] = outcome.answer
        elif errors is not None:
            errors.append(f"{scene.scene_id}: {outcome.problem}")
    return texts


def clean_answer(content: str) -> str:
    """The answer without surrounding whitespace or a code fence around all of it."""
    content = content.strip()
    fenced = _FENCED.match(content)
    return fenced.group(1).strip() if fenced else content


def _parse(content: str) -> str:
    text = clean_answer(content)
    if not text:
        raise ValueError("the answer was empty")
    return text


def _load(value: dict) -> str | None:
    text = value.get("text")
    return text if isinstance(text, str) and text.strip() else None  # anything else is asked again


ANSWERS: Answers[str] = Answers(
    parse=_parse,
    correction=lambda _problem: CORRECTION,  # the only problem is an empty answer
    gave_up="no answer in {attempts} attempts: every answer was empty",
    load=_load,
    dump=lambda text: {"text": text},
)
