"""The OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions (streaming as
server-sent events ending in [DONE]), /health and /metrics (Prometheus text), and the web page at /
(src/ltm/serve/web, served as static files). Beyond OpenAI: /v1/scenes answers a structured scene
query (ltm.serve.pvq) and /v1/memory keeps scenes per namespace (ltm.serve.memory); a chat or
completion request that names a `namespace` gets its most related earlier scenes in the prompt and
is remembered there.

OpenAI's semantics: `finish_reason` is "length" when max_tokens (or the context) ended the answer;
`usage` counts the tokens generated; `model` must name the served model (404 otherwise); `n`
choices; `logprobs` (and `top_logprobs` on chat; `echo` on completions, the prompt's own logprobs,
which lm-evaluation-harness scores multiple-choice tasks with); a completions `prompt` may be text,
token ids, or a batch of either; `stream_options.include_usage`; the first chat chunk carries the
role. A stream that fails ends with an error event and [DONE].

Security (ltm.serve.guard): the server binds 127.0.0.1 by default and refuses to bind another
address without an API key; bodies over guard.MAX_BODY_BYTES (counted as they arrive) get 413 and
max_tokens over the limit 400; every bad request gets a 4xx in OpenAI's error shape and the server
and the connection stay up; a chat role outside the template's set is refused, so that no role
string becomes markup.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi import Path as UrlPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ltm.serve.engine import ContextError, Engine, Piece, PromptError
from ltm.serve.fields import Seed
from ltm.serve.guard import Guard, error, error_body, log, openai_errors
from ltm.serve.memory import NAMESPACE_PATTERN, Hit, MemoryStore, snippets
from ltm.serve.pvq import answer_scene, parse_request

# On a chat answer: how many of the conversation's oldest messages were left out to fit the context.
DROPPED_HEADER = "X-LTM-Dropped-Messages"
MAX_TOKENS = 1024
MAX_CHOICES = 16  # prompts x n in one request: each choice takes a batch row
MAX_LOGPROBS = 20  # top alternatives per token
MAX_STOPS = 16
WEB = Path(__file__).parent / "web"  # the page at / (plain HTML, JS and CSS, shipped as package data)


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, ...)

    model: str | None = Field(None, description="the served model's name (GET /v1/models); another name gets 404")
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = Field(None, max_length=MAX_STOPS)
    seed: Seed | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="choices per prompt")
    stream: bool = False
    stream_options: StreamOptions | None = None
    namespace: str | None = Field(None, pattern=NAMESPACE_PATTERN, description="scene memory to recall from and add to")
    memory_k: int = Field(3, ge=0, le=20, description="earlier scenes recalled into the prompt")

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def top_k(self) -> int | None:
        """Alternatives to report per token; None when no logprobs were asked for."""
        return None


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(description="text, token ids, or a batch of either")
    max_tokens: int = Field(64, ge=0, description="0 with echo: only the prompt's logprobs")
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def prompts(self) -> list[str | list[int]]:
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        return list(self.prompt)

    def top_k(self) -> int | None:
        return self.logprobs


class TextPart(BaseModel):
    type: str = Field(pattern="^text$", description="only text parts: this model reads text")
    text: str


class Message(BaseModel):
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content or [])


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens; wins when given")
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def top_k(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class MemoryItem(BaseModel):
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    text: str = Field(min_length=1)
    meta: dict = Field(default_factory=dict)


@dataclass
class Ask:
    """One prompt of a request, as the engine takes it."""

    prompt: str | list[int]
    echo: str | None = None  # the prompt's text, when echo puts it before the completion
    remember: Callable[[str], None] | None = None  # stores the exchange, given the first choice's text


def create_app(engine: Engine, api_key: str | None = None, memory: MemoryStore | None = None) -> FastAPI:
    app = FastAPI(title="ltm", version="1")
    counts: Counter = Counter()
    app.add_middleware(Guard, router=app.router, counts=counts, api_key=api_key)
    openai_errors(app)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": engine.name}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        """Prometheus' text format; every figure counts up from start-up."""
        batching = {"batch_steps_total": engine.batcher.steps, "batch_rows_total": engine.batcher.rows_stepped}
        lines: list[str] = []
        for key, value in sorted((counts | batching).items()):  # sorted: a family's samples follow its TYPE line
            family = "ltm_" + key.split("{")[0]
            if f"# TYPE {family} counter" not in lines:
                lines.append(f"# TYPE {family} counter")
            lines.append(f"ltm_{key} {value}")
        return "\n".join(lines) + "\n"

    # The page and its assets sit outside /v1/, so they load without the key; the page sends it with its API calls.
    app.mount("/web", StaticFiles(directory=WEB), name="web")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": 0, "owned_by": "ltm"}]}

    def recall(request: Sampling, query: str) -> list[Hit]:
        return memory.search(request.namespace, query, request.memory_k) if request.namespace else []

    def remembering(request: Sampling, kind: str, asked: str):
        """What _respond calls with the generated text to store the exchange, when the request names a namespace."""
        if not request.namespace:
            return None

        def remember(text: str) -> None:
            if (asked + text).strip():  # an empty prompt answered with nothing is no scene
                memory.add(request.namespace, asked + text, {"kind": kind, "model": engine.name})

        return remember

    def refused(request: Sampling) -> JSONResponse | None:
        return _unknown_model(request.model, engine) or _no_memory(request.namespace, memory) or _over_limit(request.max_tokens)

    @app.post("/v1/completions")
    def completions(request: CompletionRequest):
        if answer := refused(request):
            return answer
        prompts = request.prompts()
        if not prompts or any(isinstance(p, list) and not p for p in prompts):
            return error(400, "prompt: no prompt (give text, or at least one token id)", param="prompt")
        if request.echo and request.stream:
            return error(400, "echo is not available with stream: true", param="echo")
        if request.namespace and not all(isinstance(p, str) for p in prompts):
            return error(400, "namespace: scene memory needs a text prompt, not token ids", param="namespace")
        asks = []
        for prompt in prompts:
            hits = recall(request, prompt) if isinstance(prompt, str) else []
            framed = f"Related earlier scenes:\n{snippets(hits)}\n\n{prompt}" if hits else prompt
            asks.append(Ask(framed, prompt if request.echo and isinstance(prompt, str) else None,
                            remembering(request, "completion", prompt) if isinstance(prompt, str) else None))
        return _respond(engine, request, asks, counts, chat=False)

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest):
        if request.max_completion_tokens is not None:
            request.max_tokens = request.max_completion_tokens
        if answer := refused(request) or _unknown_roles(request.messages, engine.roles):
            return answer
        if request.top_logprobs is not None and not request.logprobs:
            return error(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        asked = request.messages[-1].text()
        hits = recall(request, asked)
        recalled = [{"role": "system", "content": f"Related earlier scenes:\n{snippets(hits)}"}] if hits else []
        try:
            prompt, dropped = _fit(engine, recalled, [{"role": m.role, "content": m.text()} for m in request.messages], request.max_tokens)
        except ContextError as exc:
            return error(400, str(exc), param="messages")
        return _respond(engine, request, [Ask(prompt, remember=remembering(request, "chat", f"User: {asked}\nAssistant: "))], counts,
                        chat=True, dropped=dropped)

    @app.post("/v1/scenes")
    async def scenes(request: Request):
        # Read by hand rather than by a pydantic parameter: the body may be YAML.
        try:
            query = parse_request(await request.body(), request.headers.get("content-type", ""))
        except ValueError as exc:
            return error(400, str(exc))
        if answer := _unknown_model(query.model, engine) or _no_memory(query.namespace, memory) or _over_limit(query.max_tokens):
            return answer
        answer = await run_in_threadpool(answer_scene, engine, query, memory)
        counts["tokens_generated_total"] += answer.usage.completion_tokens
        return answer.model_dump()

    if memory is not None:
        @app.post("/v1/memory")
        def add_memory(item: MemoryItem) -> dict:
            return memory.add(item.namespace, item.text, item.meta).model_dump(by_alias=True)

        @app.get("/v1/memory")
        def list_memory(namespace: str = Query(pattern=NAMESPACE_PATTERN), limit: int = Query(50, ge=1, le=1000)) -> dict:
            return {"records": [record.model_dump(by_alias=True) for record in memory.list(namespace, limit)]}

        @app.get("/v1/memory/search")
        def search_memory(namespace: str = Query(pattern=NAMESPACE_PATTERN), q: str = Query(min_length=1),
                          k: int = Query(5, ge=1, le=100)) -> dict:
            return {"results": [hit.model_dump() for hit in memory.search(namespace, q, k)]}

        @app.delete("/v1/memory/{namespace}/{ident}")
        def delete_memory(ident: int, namespace: str = UrlPath(pattern=NAMESPACE_PATTERN)):
            if not memory.delete(namespace, ident):
                return error(404, f"no record {ident} in namespace {namespace!r}")
            return {"deleted": True}

    return app


def _unknown_model(model: str | None, engine: Engine) -> JSONResponse | None:
    if model is not None and model != engine.name:
        return error(404, f"the model {model!r} does not exist: this server serves {engine.name!r}", param="model", code="model_not_found")
    return None


def _unknown_roles(messages: list[Message], roles: tuple[str, ...]) -> JSONResponse | None:
    """A role outside the chat template's set is refused: the template writes the role as markup."""
    for i, message in enumerate(messages):
        if message.role not in roles:
            return error(400, f"messages[{i}].role {message.role!r}: this model's chat template knows {', '.join(roles)}",
                         param=f"messages[{i}].role")
    return None


def _no_memory(namespace: str | None, memory: MemoryStore | None) -> JSONResponse | None:
    if namespace and memory is None:
        return error(400, f"namespace {namespace!r}: this server runs without scene memory (ltm serve --memory-dir)", param="namespace")
    return None


def _over_limit(max_tokens: int) -> JSONResponse | None:
    if max_tokens > MAX_TOKENS:
        return error(400, f"max_tokens {max_tokens} is over this server's limit of {MAX_TOKENS}", param="max_tokens")
    return None


def _fit(engine: Engine, recalled: list[dict], messages: list[dict], max_tokens: int):
    """The chat prompt and how many of the conversation's messages were dropped to fit the context.
    Scenes recalled from memory go in only where the whole conversation fits beside them."""
    if recalled:
        try:
            prompt, dropped = engine.fit_chat(recalled + messages, max_tokens)
            if not dropped:
                return prompt, 0
        except ContextError:
            pass
    return engine.fit_chat(messages, max_tokens)


def _respond(engine: Engine, request: Sampling, asks: list[Ask], counts: Counter, chat: bool, dropped: int = 0):
    """Start every choice (prompts x n, decoded in one batch), then answer them whole or as a stream.
    A chat says how many of its oldest messages were dropped to fit the context (DROPPED_HEADER, and
    the `dropped_messages` field of a whole answer)."""
    if len(asks) * request.n > MAX_CHOICES:
        return error(400, f"{len(asks)} prompts x n={request.n} choices is over this server's limit of {MAX_CHOICES}", param="n")
    echo = isinstance(request, CompletionRequest) and request.echo
    top_k = request.top_k()
    generations = []
    try:
        for ask in asks:
            for j in range(request.n):  # choice j gets seed + j: choice 0 is what n=1 gives
                seed = None if request.seed is None else request.seed + j
                generations.append(engine.generate(ask.prompt, request.max_tokens, request.temperature, request.top_p, request.stops(),
                                                   seed, top_k, echo and top_k is not None))
    except PromptError as exc:
        for generation in generations:
            generation.cancel()
        return error(400, str(exc), param="prompt")
    ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
    kind = "chat.completion" if chat else "text_completion"
    head = {"id": ident, "object": kind + (".chunk" if chat and request.stream else ""), "created": created, "model": engine.name}
    prompt_tokens = sum(len(generations[i * request.n].prompt_ids) for i in range(len(asks)))

    def usage() -> dict:
        completion_tokens = sum(g.completion_tokens for g in generations)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}

    def remember(texts: list[str]) -> None:
        for i, ask in enumerate(asks):
            if ask.remember:
                ask.remember(texts[i * request.n])

    if not request.stream:
        try:
            choices, texts = [], []
            for index, generation in enumerate(generations):
                pieces = list(generation)
                text = "".join(piece.text for piece in pieces)
                texts.append(text)
                counts["tokens_generated_total"] += generation.completion_tokens
                if chat:
                    logprobs = {"content": [_chat_logprob(engine, p) for p in pieces if p.token is not None]} if top_k is not None else None
                else:
                    before = generation.prompt_pieces() if echo else []
                    if echo:  # the prompt as sent (text), or as its token ids decode
                        text = (asks[index // request.n].echo or "".join(p.text for p in before)) + text
                    logprobs = _completion_logprobs(engine, before + pieces) if top_k is not None else None
                choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                choices.append({"index": index, **choice, "logprobs": logprobs, "finish_reason": generation.finish_reason})
        finally:
            for generation in generations:
                generation.cancel()
        remember(texts)
        body = {**head, "choices": choices, "usage": usage()}
        if not chat:
            return body
        return JSONResponse(body | {"dropped_messages": dropped}, headers={DROPPED_HEADER: str(dropped)})

    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    def event(choices: list[dict], **extra) -> str:
        return f"data: {json.dumps({**head, 'choices': choices, **({'usage': None} if include_usage else {}), **extra})}\n\n"

    async def events():
        try:
            try:
                texts = []
                for index, generation in enumerate(generations):
                    if chat:
                        yield event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
                    pieces, streamed = iter(generation), ""
                    while (piece := await run_in_threadpool(next, pieces, None)) is not None:
                        counts["tokens_generated_total"] += piece.token is not None
                        if not piece.text and (top_k is None or piece.token is None):
                            continue
                        if chat:
                            logprobs = {"content": [_chat_logprob(engine, piece)]} if top_k is not None and piece.token is not None else None
                            choice = {"delta": {"content": piece.text}, "logprobs": logprobs}
                        else:
                            logprobs = _completion_logprobs(engine, [piece], len(streamed)) if top_k is not None else None
                            choice = {"text": piece.text, "logprobs": logprobs}
                        streamed += piece.text
                        yield event([{"index": index, **choice, "finish_reason": None}])
                    texts.append(streamed)
                    end = {"delta": {}} if chat else {"text": ""}
                    yield event([{"index": index, **end, "logprobs": None, "finish_reason": generation.finish_reason}])
                if include_usage:
                    yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage()})}\n\n"
                remember(texts)
            except Exception as exc:  # noqa: BLE001 — the client learns why the stream ended early
                log.exception("a stream failed")
                yield f"data: {json.dumps(error_body(f'the generation failed ({type(exc).__name__}: {exc})', 500))}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # also when the client went away (the task is cancelled): rows are freed at the next step
            for generation in generations:
                generation.cancel()

    return StreamingResponse(events(), media_type="text/event-stream", headers={DROPPED_HEADER: str(dropped)} if chat else None)


def _chat_logprob(engine: Engine, piece: Piece) -> dict:
    def entry(token: int, logprob: float) -> dict:
        text, raw = engine.token_string(token)
        return {"token": text, "logprob": logprob, "bytes": list(raw)}

    return {**entry(piece.token, piece.logprob.logprob), "top_logprobs": [entry(t, lp) for t, lp in piece.logprob.top]}


def _completion_logprobs(engine: Engine, pieces: list[Piece], offset: int = 0) -> dict:
    """OpenAI's completions logprobs: per token its text, logprob, top alternatives and where its text
    starts. A prompt's first token has no logprob (null) when nothing comes before it."""
    tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
    for piece in pieces:
        if piece.token is not None:
            tokens.append(engine.token_string(piece.token)[0])
            token_logprobs.append(piece.logprob.logprob if piece.logprob else None)
            top_logprobs.append({engine.token_string(t)[0]: lp for t, lp in piece.logprob.top} if piece.logprob else None)
            text_offset.append(offset)
        offset += len(piece.text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": text_offset}


def check_binding(host: str, api_key: str | None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise ValueError(f"binding {host} exposes the model beyond this machine: set an API key (--api-key-env) or bind 127.0.0.1")
