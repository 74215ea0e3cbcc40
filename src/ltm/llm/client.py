"""Talking to an OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, ...).

Three small pieces that every LLM-backed stage shares: prompt templates shipped as package data,
a chat client that retries what is worth retrying, and a bounded parallel map.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any, TypeVar

import httpx

from ltm.config import LLMConfig

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
EXCERPT_CHARS = 200


class LLMError(RuntimeError):
    """A request the endpoint refused or never answered; `status` is None when no response came.

    `retryable` marks failures that may pass on a later attempt (connection, timeout, 429, 5xx).
    """

    def __init__(self, message: str, url: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.url = url
        self.status = status
        self.retryable = retryable


# --- prompts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A prompt template; `version` goes into cache keys and annotator names, so bump it on any change."""

    name: str
    version: int
    template: Template

    def render(self, **fields: str) -> str:
        return self.template.substitute(fields)


_VERSION_LINE = re.compile(r"version:\s*(\d+)\s*")


def load_prompt(name: str) -> Prompt:
    """Read ltm/data/prompts/NAME.md: a first line `version: N`, then a string.Template body ($field)."""
    text = resources.files("ltm").joinpath(f"data/prompts/{name}.md").read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    match = _VERSION_LINE.fullmatch(first)
    if match is None:
        raise ValueError(f"prompt {name}: the first line must be 'version: N', not {first!r}")
    return Prompt(name=name, version=int(match.group(1)), template=Template(body.strip() + "\n"))


# --- client ----------------------------------------------------------------------------------------


class ChatClient:
    """POST {base_url}/chat/completions; safe to share between threads (httpx.Client is).

    Connection errors, timeouts, 429 and 5xx are retried `config.retries` times with exponential
    backoff (backoff_s * 2**n, at most max_backoff_s); any other 4xx raises LLMError at once,
    because asking again would get the same refusal.
    """

    def __init__(self, config: LLMConfig, backoff_s: float = 0.2, max_backoff_s: float = 5.0):
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http = httpx.Client(timeout=config.timeout_s, headers=_auth_headers(config.api_key_env))

    def complete(self, messages: list[dict], **params: Any) -> str:
        """The assistant's reply text; `params` (max_tokens, stop, ...) override the defaults in the body."""
        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature, **params}
        for attempt in range(1, self.config.retries + 1):
            try:
                return self._send(body, attempt)
            except LLMError as exc:
                if not exc.retryable:
                    raise
            time.sleep(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))
        return self._send(body, self.config.retries + 1)  # the last attempt: its error reaches the caller

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, body: dict, attempt: int) -> str:
        tried = f" (attempt {attempt})" if attempt > 1 else ""
        try:
            response = self._http.post(self.url, json=body)
        except httpx.TransportError as exc:  # connection refused or reset, timeouts
            raise LLMError(f"POST {self.url}: {type(exc).__name__}: {exc}{tried}", self.url, retryable=True) from exc
        if response.status_code != 200:
            message = f"POST {self.url}: HTTP {response.status_code}{tried}: {_excerpt(response.text)}"
            raise LLMError(message, self.url, response.status_code, retryable=response.status_code in RETRY_STATUSES)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"POST {self.url}: HTTP 200 but not a chat completion: {_excerpt(response.text)}", self.url, 200) from None
        return content or ""  # some servers send null content for an empty reply


def _auth_headers(api_key_env: str | None) -> dict[str, str]:
    key = os.environ.get(api_key_env) if api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "..."


# --- bounded parallel map --------------------------------------------------------------------------


def map_bounded(
    fn: Callable[[T], R],
    items: Iterable[T],
    concurrency: int,
    on_done: Callable[[int, int], None] | None = None,
) -> list[R]:
    """fn over items on at most `concurrency` threads; results in input order.

    The first exception fn raises cancels the items not yet started, waits for those in flight and
    is re-raised. A caller that wants per-item failures catches them inside fn and returns them.
    `on_done(done, total)` is called on the calling thread after each item finishes.
    """
    items = list(items)
    results: list[Any] = [None] * len(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if on_done is not None:
                    on_done(done, len(items))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


LANGUAGE_NAMES = {"ru": "Russian", "en": "English"}


def language_name(lang: str) -> str:
    """How a prompt names a text's language; an unknown code asks the model to follow the text."""
    return LANGUAGE_NAMES.get(lang, "not identified; use the language the text is written in")
