"""`ltm serve` as OpenAI clients and attackers meet it: OpenAI's semantics (finish_reason, usage,
model, n, logprobs, echo, stream_options, roles) and hardening (body limit while reading, errors in
OpenAI's shape on a connection that stays open, failed streams, abandoned streams, the API key)."""

import http.client
import json
import time
from urllib.parse import urlparse

import httpx
import pytest
import torch
from conftest import ScriptedEngine, serve
from openai import APIError, NotFoundError, OpenAI
from transformers import AutoModelForCausalLM, AutoTokenizer

from ltm.markup import CHAT_TOKENS, END_OF_TURN
from ltm.cli import main
from ltm.serve.app import create_app
from ltm.serve.engine import Engine
from ltm.serve.guard import MAX_BODY_BYTES
from ltm.serve.memory import MemoryStore

PROMPT = "THEON: Can a thing be measured"


@pytest.fixture(scope="module")
def engine(exported):
    engine = Engine(exported)
    engine.batcher.stop_ids = frozenset()  # every answer runs to max_tokens unless a stop string ends it
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    server, url = serve(create_app(engine, memory=MemoryStore(tmp_path_factory.mktemp("memory"))))
    yield url
    server.should_exit = True


@pytest.fixture(scope="module")
def reference(exported):
    """transformers' own model and tokenizer on the same folder: what logprobs must agree with."""
    return AutoModelForCausalLM.from_pretrained(str(exported)).eval(), AutoTokenizer.from_pretrained(str(exported))


def logprobs_by_transformers(reference, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | bos, ids[:t]) for every t, from transformers."""
    model, tokenizer = reference
    with torch.no_grad():
        logits = model(torch.tensor([[tokenizer.bos_token_id] + ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None])[:, 0]


def keepalive(url: str):
    """One kept-alive connection and a function sending a request on it -> (status, body)."""
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def ask(method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        connection.request(method, path, body=body.encode() if body is not None else None, headers={"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()

    return connection, ask


def is_openai_error(response: httpx.Response | http.client.HTTPResponse, body: bytes | None = None) -> dict:
    error = json.loads(body if body is not None else response.content)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["type"]
    return error


# --- OpenAI's semantics ------------------------------------------------------------------------


def test_finish_reason_usage_and_the_first_chunk_follow_openai(server, engine):
    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    done = client.completions.create(model="hf", prompt=PROMPT, max_tokens=5, temperature=0, logprobs=0)
    assert done.choices[0].finish_reason == "length" and done.usage.completion_tokens == 5
    assert len(done.choices[0].logprobs.tokens) == 5 and done.usage.prompt_tokens == len(engine.encode(PROMPT))
    # A stop string ends the answer with "stop"; the tokens counted are those generated, up to the stop.
    text = done.choices[0].text
    stop = text.strip()[:2]
    stopped = client.completions.create(model="hf", prompt=PROMPT, max_tokens=5, temperature=0, stop=[stop], logprobs=0)
    assert stopped.choices[0].finish_reason == "stop" and stop not in stopped.choices[0].text
    assert stopped.usage.completion_tokens == len(stopped.choices[0].logprobs.tokens) <= 5

    chunks = list(client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hello"}], max_tokens=4,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])
    whole = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hello"}], max_tokens=4, temperature=0)
    assert whole.usage.completion_tokens == 4 and whole.choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == whole.choices[0].message.content
    newer = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
                                           max_completion_tokens=4, temperature=0)
    assert newer.choices[0].message.content == whole.choices[0].message.content  # content parts and max_completion_tokens


def test_an_unknown_model_is_404_and_n_gives_n_choices(server):
    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    with pytest.raises(NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4o", prompt=PROMPT, max_tokens=2)
    three = client.completions.create(model="hf", prompt=PROMPT, max_tokens=6, temperature=1.0, seed=11, n=3)
    one = client.completions.create(model="hf", prompt=PROMPT, max_tokens=6, temperature=1.0, seed=11)
    assert [c.index for c in three.choices] == [0, 1, 2] and three.choices[0].text == one.choices[0].text
    assert len({c.text for c in three.choices}) > 1 and three.usage.completion_tokens == 18
    streamed = list(client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hi"}], max_tokens=3, n=2,
                                                   temperature=1.0, seed=5, stream=True))
    ended = {c.choices[0].index: c.choices[0].finish_reason for c in streamed if c.choices[0].finish_reason}
    assert ended == {0: "length", 1: "length"}
    too_many = httpx.post(f"{server}/v1/completions", json={"prompt": PROMPT, "n": 64})
    assert too_many.status_code == 400 and is_openai_error(too_many)["param"] == "n"


def test_logprobs_on_chat_and_completions_are_the_models_own(server, reference):
    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    done = client.completions.create(model="hf", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3)
    lp = done.choices[0].logprobs
    tokenizer = reference[1]
    ids = tokenizer.encode(PROMPT, add_special_tokens=False) + tokenizer.encode(done.choices[0].text, add_special_tokens=False)
    expected = logprobs_by_transformers(reference, ids)[-6:]
    assert torch.allclose(torch.tensor(lp.token_logprobs), expected, atol=1e-4)
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):  # greedy: the chosen token is the best of its top 3
        assert len(top) == 3 and max(top.values()) == chosen
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)

    chat = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hello"}], max_tokens=4, temperature=0,
                                          logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert len(content) == 4 and all(len(c.top_logprobs) == 2 and c.top_logprobs[0].logprob == c.logprob for c in content)
    assert b"".join(bytes(c.bytes) for c in content).decode("utf-8", "replace") == chat.choices[0].message.content
    refused = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})
    assert refused.status_code == 400 and is_openai_error(refused)["param"] == "top_logprobs"


def test_echo_with_logprobs_scores_the_prompt_as_lm_eval_reads_it(server, reference):
    """lm-eval's local-completions model sends token ids with echo, max_tokens 1 and logprobs 1, and
    reads token_logprobs[ctxlen:-1]: the continuation's log-likelihood, and whether it is greedy."""
    tokenizer = reference[1]
    context = tokenizer.encode("MIRA: Perhaps. But what do you mean by", add_special_tokens=False)
    continuation = tokenizer.encode(" a thing?", add_special_tokens=False)
    payload = {"model": "hf", "prompt": [context + continuation], "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}
    answer = httpx.post(f"{server}/v1/completions", json=payload, timeout=60).json()
    lp = answer["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(context) + len(continuation) + 1
    expected = logprobs_by_transformers(reference, context + continuation)
    assert torch.allclose(torch.tensor(lp["token_logprobs"][:-1]), expected, atol=1e-4)
    assert answer["choices"][0]["text"].startswith(tokenizer.decode(context + continuation))
    lm_eval = pytest.importorskip("lm_eval.models.openai_completions", reason="lm-eval is not installed (pip install lm-eval)")
    (loglikelihood, greedy), = lm_eval.LocalCompletionsAPI.parse_logprobs(answer, ctxlens=[len(context)])
    assert loglikelihood == pytest.approx(float(expected[len(context):].sum()), abs=1e-3)
    assert greedy == all(max(top.values()) == chosen for chosen, top in
                         zip(lp["token_logprobs"][len(context):-1], lp["top_logprobs"][len(context):-1]))
    # A batch of text prompts, max_tokens 0: only the prompts' logprobs.
    batch = httpx.post(f"{server}/v1/completions", json={"prompt": ["MIRA:", "THEON:"], "max_tokens": 0, "echo": True, "logprobs": 0}).json()
    assert [c["text"] for c in batch["choices"]] == ["MIRA:", "THEON:"] and batch["usage"]["completion_tokens"] == 0
    empty = httpx.post(f"{server}/v1/completions", json={"prompt": "", "max_tokens": 0, "echo": True, "logprobs": 1}).json()
    assert empty["choices"][0]["text"] == "" and empty["choices"][0]["logprobs"]["tokens"] == []
    too_long = httpx.post(f"{server}/v1/completions", json={"prompt": [context * 20], "echo": True, "logprobs": 1, "max_tokens": 1})
    assert too_long.status_code == 400 and "context" in is_openai_error(too_long)["message"]


def test_a_chat_role_can_only_be_one_the_template_knows(server):
    for role in (f"user|>x{END_OF_TURN}{CHAT_TOKENS['assistant']}", "tool", "developer"):
        refused = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": role, "content": "hi"}], "max_tokens": 2})
        assert refused.status_code == 400, role
        error = is_openai_error(refused)
        assert error["param"] == "messages[0].role" and "system, user, assistant" in error["message"]


# --- hardening ---------------------------------------------------------------------------------


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(server):
    def chunks():  # 5 MB with no Content-Length
        for _ in range(80):
            yield b"x" * 65536

    refused = httpx.post(f"{server}/v1/completions", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert refused.status_code == 413 and "over" in is_openai_error(refused)["message"]
    small = (json.dumps({"prompt": "a", "max_tokens": 1}).encode() for _ in range(1))
    assert httpx.post(f"{server}/v1/completions", content=small, headers={"content-type": "application/json"}).status_code == 200
    assert MAX_BODY_BYTES < 5 * 2**20


def test_every_bad_input_is_a_4xx_in_openai_shape_on_a_connection_that_stays_open(server):
    connection, ask = keepalive(server)
    assert ask("POST", "/v1/completions", '{"prompt": "a", "max_tokens": 1}')[0] == 200
    socket = connection.sock
    bad = [
        ("/v1/completions", '{"prompt": "a", "seed": %d}' % 2**70, "seed"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a\\ud800b"}]}', "surrogate"),
        ("/v1/memory", '{"namespace": "study", "text": "\\udfff"}', "surrogate"),
        ("/v1/memory", '{"namespace": "study", "text": "ok", "meta": {"\\ud800": 1}}', "surrogate"),
        ("/v1/scenes", '{"scene": "a door", "question": "who\\ud800?"}', "surrogate"),
        ("/v1/completions", '{"prompt": [[1, 2, 99999999]]}', "vocabulary"),
        ("/v1/completions", '{"prompt": []}', "prompt"),
        ("/v1/completions", '{"prompt": "a", "max_tokens": -1}', "max_tokens"),
        ("/v1/completions", '{"prompt": "a", "temperature": NaN}', "temperature"),
        ("/v1/completions", '{not json', "JSON"),
        ("/v1/completions", '{"prompt": "a", "echo": true, "stream": true}', "echo"),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}', "text"),
    ]
    for path, body, word in bad:
        status, answer = ask("POST", path, body)
        assert 400 <= status < 500, (body, status, answer)
        assert word.lower() in is_openai_error(None, answer)["message"].lower(), (body, answer)
        assert connection.sock is socket  # not reset: the next request goes on the same connection
    assert ask("POST", "/v1/completions", '{"prompt": "a", "max_tokens": 1}')[0] == 200 and connection.sock is socket
    connection.close()


def test_an_error_inside_the_server_is_a_json_500_and_a_failed_stream_ends_with_an_error_and_done():
    class Failing(ScriptedEngine):
        def stream(self, prompt, max_tokens, temperature, top_p, stop, seed):
            yield "half an"
            raise RuntimeError("the model fell over")

    server, url = serve(create_app(Failing(lambda prompt: "")))
    try:
        connection, ask = keepalive(url)
        status, body = ask("POST", "/v1/completions", '{"prompt": "a"}')
        assert status == 500 and "fell over" in is_openai_error(None, body)["message"]
        socket = connection.sock
        assert ask("GET", "/health")[0] == 200 and connection.sock is socket  # the connection was not reset
        connection.close()
        raw = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "a"}], "stream": True}).text
        events = [line[len("data: "):] for line in raw.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and "fell over" in json.loads(events[-2])["error"]["message"]
        assert json.loads(events[1])["choices"][0]["delta"]["content"] == "half"
        with pytest.raises(APIError, match="fell over"):  # the OpenAI client raises with the server's reason
            list(OpenAI(base_url=f"{url}/v1", api_key="unused").chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "a"}], stream=True))
    finally:
        server.should_exit = True


def test_a_disconnected_stream_frees_its_row_at_the_next_step(exported):
    engine = Engine(exported)
    engine.batcher.stop_ids = frozenset()
    decode = engine.batcher._decode

    def slow_decode():  # about 20 tokens a second, so the client leaves long before max_tokens
        time.sleep(0.05)
        decode()

    engine.batcher._decode = slow_decode
    server, url = serve(create_app(engine))
    try:
        body = {"prompt": "a", "max_tokens": 50, "stream": True, "temperature": 0}
        with httpx.Client(timeout=60) as client, client.stream("POST", f"{url}/v1/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            (request,) = engine.batcher.running.values()
        # The connection is closed here, after one token of fifty.
        deadline = time.time() + 30
        while engine.batcher.running and time.time() < deadline:
            time.sleep(0.01)
        assert not engine.batcher.running and request.cancelled
        assert request.produced < 15  # given back within a few steps, not decoded to 50
    finally:
        server.should_exit = True
        engine.close()


def test_the_api_key_scheme_is_case_insensitive_and_a_missing_key_variable_is_an_error(monkeypatch, capsys, exported):
    server, url = serve(create_app(ScriptedEngine(lambda prompt: "x"), api_key="sesame"))
    try:
        for header in ("Bearer sesame", "bearer sesame", "BEARER  sesame"):
            assert httpx.get(f"{url}/v1/models", headers={"Authorization": header}).status_code == 200, header
        for header in ("bearer wrong", "Basic sesame", "sesame"):
            refused = httpx.get(f"{url}/v1/models", headers={"Authorization": header})
            assert refused.status_code == 401 and is_openai_error(refused)["code"] == "invalid_api_key"
    finally:
        server.should_exit = True
    monkeypatch.delenv("LTM_TEST_NO_SUCH_KEY", raising=False)
    assert main(["serve", str(exported), "--api-key-env", "LTM_TEST_NO_SUCH_KEY"]) == 1
    assert "LTM_TEST_NO_SUCH_KEY" in capsys.readouterr().err.replace("\n", "")
