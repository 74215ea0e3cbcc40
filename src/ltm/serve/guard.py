"""What stands between the network and the API: the request counter, the API key, the body limit,
and errors in OpenAI's shape.

`Guard` is plain ASGI rather than an http middleware of FastAPI's, because it has to see the body
as it arrives: a body sent in chunks, with no Content-Length, is counted while it is read and
refused with 413 past MAX_BODY_BYTES, before anything parses it. It also turns an error that
escaped an endpoint into a JSON 500 instead of letting it reach the server, which would answer in
plain text and reset the kept-alive connection. Every error the API sends has OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, so an OpenAI client shows the message.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match

from ltm.serve.fields import lone_surrogate

MAX_BODY_BYTES = 256 * 1024
DRAIN_BYTES = 64 * 1024 * 1024  # read (and drop) this much of a refused body, so the client is still reading when the 413 comes
log = logging.getLogger("ltm.serve")

_TYPES = {401: "authentication_error", 404: "invalid_request_error", 413: "invalid_request_error", 500: "server_error"}


def error_body(message: str, status: int = 400, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param, "code": code}}


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, status, param, code), status_code=status)


def openai_errors(app: FastAPI) -> None:
    """A body that does not validate gets 400 with every problem in the message (FastAPI's own is a
    422 with `detail`); an unknown path or method gets its status in the same shape."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        places = [".".join(str(part) for part in problem["loc"] if part != "body") for problem in problems]
        message = "; ".join(f"{place or 'body'}: {problem['msg']}" for place, problem in zip(places, problems))
        return error(400, message or "invalid request", param=places[0] if places and places[0] else None)

    @app.exception_handler(HTTPException)
    async def http(request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), exc.status_code), status_code=exc.status_code, headers=exc.headers)


class Guard:
    def __init__(self, app, router, counts: Counter, api_key: str | None = None, max_body: int = MAX_BODY_BYTES):
        self.app, self.router, self.counts, self.api_key, self.max_body = app, router, counts, api_key, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.counts[f'requests_total{{path="{self._route(scope)}"}}'] += 1
        headers = Headers(scope=scope)
        if self.api_key and scope["path"].startswith("/v1/") and not self._authorized(headers.get("authorization", "")):
            await _send(send, 401, error_body("missing or wrong API key (Authorization: Bearer KEY)", 401, code="invalid_api_key"))
            return
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            await _send(send, 400, error_body(f"Content-Length {declared!r} is not a number"), close=True)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body or int(declared or 0) > self.max_body:
                await _drain(receive, more)
                await _send(send, 413, error_body(f"request body over {self.max_body} bytes", 413), close=True)
                return
        if (problem := _not_unicode(bytes(body), headers.get("content-type"))) is not None:
            await _send(send, 400, error_body(problem, param=problem.split(":")[0]))
            return
        await self._forward(scope, _replay(bytes(body), receive), send)

    async def _forward(self, scope, receive, send) -> None:
        state = {"started": False, "done": False}

        async def watched(message) -> None:
            state["started"] |= message["type"] == "http.response.start"
            state["done"] |= message["type"] == "http.response.body" and not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:  # noqa: BLE001 — one request failed; the server and the connection go on
            log.exception("%s %s failed", scope.get("method"), scope["path"])
            if state["started"]:
                if not state["done"]:
                    raise  # half an answer was sent: only closing the connection can tell the client
                return
            await _send(send, 500, error_body(f"the server failed on this request ({type(exc).__name__}: {exc})", 500))

    def _authorized(self, header: str) -> bool:
        scheme, _, key = header.strip().partition(" ")  # the scheme is case-insensitive (RFC 7235): bearer, Bearer, BEARER
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode("latin-1", "replace"), self.api_key.encode("utf-8"))

    def _route(self, scope) -> str:
        """The matched route's template (not the raw path, so that the counters stay few)."""
        for route in self.router.routes:
            if route.matches(scope)[0] is Match.FULL:
                return route.path
        return "unmatched"


def _not_unicode(body: bytes, content_type: str | None) -> str | None:
    """Where a JSON body (FastAPI reads a body without a content type as JSON too) holds a lone
    surrogate, which no validator can even report; None when it holds none or is not JSON."""
    if content_type and "json" not in content_type.lower():
        return None
    if b"\\u" not in body and b"\xed" not in body:  # a surrogate comes as an escape, or as raw bytes that json reads through
        return None
    try:
        return lone_surrogate(json.loads(body))
    except ValueError:  # not JSON: the endpoint says so
        return None


def _replay(body: bytes, receive):
    """The body, already read, as the first message; then the server's own (a disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _drain(receive, more: bool) -> None:
    read = 0
    while more and read < DRAIN_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        read += len(message.get("body", b""))
        more = message.get("more_body", False)


async def _send(send, status: int, body: dict, close: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
