"""The OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions (streaming as
server-sent events ending in [DONE]), /health and /metrics (Prometheus text), and the web page at /
(src/ltm/serve/web, served as static files). Beyond OpenAI: /v1/scenes answers a structured scene
query (ltm.serve.pvq) and /v1/memory keeps scenes per namespace (ltm.serve.memory); a chat or
completion request that names a `namespace` gets its most related earlier scenes in the prompt and
is remembered there.

Security: the server binds 127.0.0.1 by default and refuses to bind another address without an API
key; requests over MAX_BODY_BYTES and max_tokens over the limit get a 4xx; a malformed body gets a
4xx with the reason and the server stays up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi import Path as UrlPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ltm.serve.engine import ContextError, Engine
from ltm.serve.memory import NAMESPACE_PATTERN, Hit, MemoryStore, snippets
from ltm.serve.pvq import answer_scene, parse_request

MAX_BODY_BYTES = 256 * 1024
# On a chat answer: how many of the conversation's oldest messages were left out to fit the context.
DROPPED_HEADER = "X-LTM-Dropped-Messages"
MAX_TOKENS = 1024
WEB = Path(__file__).parent / "web"  # the page at / (plain HTML, JS and CSS, shipped as package data)


class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (n, user, ...)

    model: str | None = None
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    namespace: str | None = Field(None, pattern=NAMESPACE_PATTERN, description="scene memory to recall from and add to")
    memory_k: int = Field(3, ge=0, le=20, description="earlier scenes recalled into the prompt")

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(Sampling):
    prompt: str


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class MemoryItem(BaseModel):
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    text: str = Field(min_length=1)
    meta: dict = Field(default_factory=dict)


def create_app(engine: Engine, api_key: str | None = None, memory: MemoryStore | None = None) -> FastAPI:
    app = FastAPI(title="ltm", version="1")
    counts: Counter = Counter()

    @app.middleware("http")
    async def guard(request: Request, call_next):
        counts[f'requests_total{{path="{request.url.path}"}}'] += 1
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        if api_key and request.url.path.startswith("/v1/") and request.headers.get("authorization") != f"Bearer {api_key}":
            return _error(401, "missing or wrong API key (Authorization: Bearer ...)")
        return await call_next(request)

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

    @app.post("/v1/completions")
    def completions(request: CompletionRequest):
        if refused := _no_memory(request.namespace, memory):
            return refused
        hits = recall(request, request.prompt)
        prompt = f"Related earlier scenes:\n{snippets(hits)}\n\n{request.prompt}" if hits else request.prompt
        return _respond(engine, request, prompt, counts, chat=False, remember=remembering(request, "completion", request.prompt))

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest):
        if refused := _no_memory(request.namespace, memory):
            return refused
        if refused := _over_limit(request.max_tokens):
            return refused
        asked = request.messages[-1].content
        hits = recall(request, asked)
        recalled = [{"role": "system", "content": f"Related earlier scenes:\n{snippets(hits)}"}] if hits else []
        try:
            prompt, dropped = _fit(engine, recalled, [m.model_dump() for m in request.messages], request.max_tokens)
        except ContextError as exc:
            return _error(400, str(exc))
        return _respond(engine, request, prompt, counts, chat=True, remember=remembering(request, "chat", f"User: {asked}\nAssistant: "),
                        dropped=dropped)

    @app.post("/v1/scenes")
    async def scenes(request: Request):
        # Read by hand rather than by a pydantic parameter: the body may be YAML.
        try:
            query = parse_request(await request.body(), request.headers.get("content-type", ""))
        except ValueError as exc:
            return _error(422, str(exc))
        if refused := _no_memory(query.namespace, memory) or _over_limit(query.max_tokens):
            return refused
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
                return _error(404, f"no record {ident} in namespace {namespace!r}")
            return {"deleted": True}

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def _no_memory(namespace: str | None, memory: MemoryStore | None) -> JSONResponse | None:
    if namespace and memory is None:
        return _error(400, f"namespace {namespace!r}: this server runs without scene memory (ltm serve --memory-dir)")
    return None


def _over_limit(max_tokens: int) -> JSONResponse | None:
    if max_tokens > MAX_TOKENS:
        return _error(400, f"max_tokens {max_tokens} is over this server's limit of {MAX_TOKENS}")
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


def _respond(engine: Engine, request: Sampling, prompt: str, counts: Counter, chat: bool, remember=None, dropped: int = 0):
    """`remember`, when given, is called with the whole generated text once it is done. A chat says
    how many of its oldest messages were dropped to fit the context (DROPPED_HEADER, and the
    `dropped_messages` field of a whole answer)."""
    if refused := _over_limit(request.max_tokens):
        return refused
    pieces = engine.stream(prompt, request.max_tokens, request.temperature, request.top_p, request.stops(), request.seed)
    ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
    kind = "chat.completion" if chat else "text_completion"
    if request.stream:
        def events():
            streamed = []
            for piece in pieces:
                streamed.append(piece)
                counts["tokens_generated_total"] += 1
                delta = {"delta": {"content": piece}} if chat else {"text": piece}
                yield f"data: {json.dumps({'id': ident, 'object': kind + ('.chunk' if chat else ''), 'created': created, 'model': engine.name, 'choices': [{'index': 0, **delta, 'finish_reason': None}]})}\n\n"
            end = {"delta": {}} if chat else {"text": ""}
            yield f"data: {json.dumps({'id': ident, 'object': kind + ('.chunk' if chat else ''), 'created': created, 'model': engine.name, 'choices': [{'index': 0, **end, 'finish_reason': 'stop'}]})}\n\n"
            if remember:
                remember("".join(streamed))
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={DROPPED_HEADER: str(dropped)} if chat else None)
    text = "".join(pieces)
    if remember:
        remember(text)
    generated = len(engine.encode(text))
    counts["tokens_generated_total"] += generated
    choice = {"index": 0, "message": {"role": "assistant", "content": text}} if chat else {"index": 0, "text": text}
    prompt_tokens = len(engine.encode(prompt))
    body = {"id": ident, "object": kind, "created": created, "model": engine.name,
            "choices": [{**choice, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}}
    if not chat:
        return body
    return JSONResponse(body | {"dropped_messages": dropped}, headers={DROPPED_HEADER: str(dropped)})


def check_binding(host: str, api_key: str | None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise ValueError(f"binding {host} exposes the model beyond this machine: set an API key (--api-key-env) or bind 127.0.0.1")
