"""The OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions (streaming as
server-sent events ending in [DONE]), /health and /metrics (Prometheus text).

Security: the server binds 127.0.0.1 by default and refuses to bind another address without an API
key; requests over MAX_BODY_BYTES and max_tokens over the limit get a 4xx; a malformed body gets a
4xx with the reason and the server stays up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ltm.serve.engine import Engine

MAX_BODY_BYTES = 256 * 1024
MAX_TOKENS = 1024


class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (n, user, ...)

    model: str | None = None
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(Sampling):
    prompt: str


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


def create_app(engine: Engine, api_key: str | None = None) -> FastAPI:
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
        return "".join(f"ltm_{key} {value}\n" for key, value in sorted(counts.items()))

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": 0, "owned_by": "ltm"}]}

    @app.post("/v1/completions")
    def completions(request: CompletionRequest):
        return _respond(engine, request, request.prompt, counts, chat=False)

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest):
        prompt = engine.chat_prompt([m.model_dump() for m in request.messages])
        return _respond(engine, request, prompt, counts, chat=True)

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def _respond(engine: Engine, request: Sampling, prompt: str, counts: Counter, chat: bool):
    if request.max_tokens > MAX_TOKENS:
        return _error(400, f"max_tokens {request.max_tokens} is over this server's limit of {MAX_TOKENS}")
    pieces = engine.stream(prompt, request.max_tokens, request.temperature, request.top_p, request.stops(), request.seed)
    ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
    kind = "chat.completion" if chat else "text_completion"
    if request.stream:
        def events():
            for piece in pieces:
                counts["tokens_generated_total"] += 1
                delta = {"delta": {"content": piece}} if chat else {"text": piece}
                yield f"data: {json.dumps({'id': ident, 'object': kind + ('.chunk' if chat else ''), 'created': created, 'model': engine.name, 'choices': [{'index': 0, **delta, 'finish_reason': None}]})}\n\n"
            end = {"delta": {}} if chat else {"text": ""}
            yield f"data: {json.dumps({'id': ident, 'object': kind + ('.chunk' if chat else ''), 'created': created, 'model': engine.name, 'choices': [{'index': 0, **end, 'finish_reason': 'stop'}]})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    text = "".join(pieces)
    generated = len(engine.tokenizer.encode(text, add_special_tokens=False))
    counts["tokens_generated_total"] += generated
    choice = {"index": 0, "message": {"role": "assistant", "content": text}} if chat else {"index": 0, "text": text}
    prompt_tokens = len(engine.tokenizer.encode(prompt, add_special_tokens=False))
    return {"id": ident, "object": kind, "created": created, "model": engine.name,
            "choices": [{**choice, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}}


def check_binding(host: str, api_key: str | None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise ValueError(f"binding {host} exposes the model beyond this machine: set an API key (--api-key-env) or bind 127.0.0.1")
