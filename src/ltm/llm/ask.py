"""Asking a model one question per item, with an on-disk cache, corrections and a shared error policy.

Every LLM-backed stage runs the same loop: answer from the AnswerCache when it holds a usable
answer; otherwise ask, and while the answer is not acceptable ask again with the problem pointed
out (up to `config.retries` times); cache an acceptable answer the moment it arrives, so an
interrupted run resumes where it stopped. A request the endpoint refuses as such (REFUSED_REQUEST:
e.g. too long for the model's context) is that item's problem; any other endpoint failure would
repeat for every item, so it raises LLMError and stops the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from ltm.config import LLMConfig
from ltm.llm.cache import AnswerCache
from ltm.llm.client import ChatClient, LLMError, map_bounded

T = TypeVar("T")

REFUSED_REQUEST = frozenset({400, 413, 422})  # a problem of this one request, not of the endpoint


@dataclass(frozen=True)
class Answers(Generic[T]):
    """One kind of answer: how it is read from a reply, corrected, and kept in the cache."""

    parse: Callable[[str], T]  # raises ValueError whose message says what is wrong with the reply
    correction: Callable[[str], str]  # that message -> what the model is told before it answers again
    gave_up: str  # the problem once every attempt failed; may name {attempts} and {problem}
    load: Callable[[dict], T | None]  # a cached value -> the answer, or None to ask again
    dump: Callable[[T], dict]


class Query(NamedTuple):
    key: str  # the AnswerCache key: everything that determines the answer
    prompt: str  # the user message


@dataclass(frozen=True)
class Outcome(Generic[T]):
    answer: T | None = None
    problem: str | None = None  # why there is no answer


def ask_all(
    queries: list[Query],
    answers: Answers[T],
    config: LLMConfig,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    client: ChatClient | None = None,
) -> list[Outcome[T]]:
    """An outcome per query, in input order, on at most `config.concurrency` threads.

    `on_progress(done, total)` is called after each query; without `client` one is made from
    `config` and closed at the end.
    """
    cache = AnswerCache(config.cache_dir)
    chat = client or ChatClient(config)
    try:
        return map_bounded(lambda query: _answer(query, answers, chat, cache, config.retries), queries, config.concurrency, on_progress)
    finally:
        if client is None:  # a client passed in is the caller's to close
            chat.close()


def _answer(query: Query, answers: Answers[T], client: ChatClient, cache: AnswerCache, retries: int) -> Outcome[T]:
    """The cached answer, else the model's (cached when acceptable), else the reason there is none."""
    value = cache.get(query.key)
    cached = answers.load(value) if value is not None else None
    if cached is not None:
        return Outcome(cached)
    try:
        outcome = _ask(client, query.prompt, answers, retries)
    except LLMError as exc:
        if exc.status not in REFUSED_REQUEST:
            raise
        return Outcome(problem=str(exc))
    if outcome.answer is not None:
        cache.put(query.key, answers.dump(outcome.answer))
    return outcome


def _ask(client: ChatClient, prompt: str, answers: Answers[T], retries: int) -> Outcome[T]:
    """Ask, and on an unacceptable answer ask again with the problem pointed out."""
    messages = [{"role": "user", "content": prompt}]
    for _ in range(retries + 1):
        content = client.complete(messages)
        try:
            return Outcome(answers.parse(content))
        except ValueError as exc:
            problem = str(exc)
        messages = [*messages, {"role": "assistant", "content": content}, {"role": "user", "content": answers.correction(problem)}]
    return Outcome(problem=answers.gave_up.format(attempts=retries + 1, problem=problem))
