"""A real HTTP server on loopback that speaks the OpenAI chat-completions protocol, for tests of
the LLM clients. A test gives it a `reply(body, headers) -> (status, text)`; the stub counts
overlapping requests so tests can check bounded concurrency."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCENE_IN_PROMPT = re.compile(r"<scene>\n(.*)\n</scene>", re.DOTALL)
Reply = Callable[[dict, dict], tuple[int, str]]


def completion(content: str) -> str:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    return json.dumps({"id": "chatcmpl-test", "object": "chat.completion", "model": "fake", "choices": [choice]})


def scene_of(body: dict) -> str:
    """The scene text the prompt carries between <scene> tags."""
    return SCENE_IN_PROMPT.search(body["messages"][0]["content"]).group(1)


class StubServer:
    def __init__(self, reply: Reply, delay_s: float = 0.0):
        self.reply, self.delay_s = reply, delay_s
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "StubServer":
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    return self._send(404, "no such route")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    time.sleep(stub.delay_s)
                    status, text = stub.reply(body, dict(self.headers))
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                self._send(status, text)

            def _send(self, status: int, text: str) -> None:
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

        return Handler
