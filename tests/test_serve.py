"""The OpenAI-compatible server, driven by the official `openai` package over loopback."""

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import serve
from openai import OpenAI

from ltm.cli import main
from ltm.serve.app import MAX_TOKENS, check_binding, create_app
from ltm.serve.engine import Engine


@pytest.fixture(scope="module")
def server(exported):
    server, url = serve(create_app(Engine(exported)))
    yield url
    server.should_exit = True


def test_models_completions_and_chat_through_the_openai_client(server):
    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["hf"]
    done = client.completions.create(model="hf", prompt="THEON: Can a thing", max_tokens=8, temperature=0, seed=1)
    again = client.completions.create(model="hf", prompt="THEON: Can a thing", max_tokens=8, temperature=0, seed=1)
    assert done.choices[0].text == again.choices[0].text and done.usage.completion_tokens <= 8
    chat = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "Помним ли мы прошлое?"}],
                                          max_tokens=6, temperature=0.8, top_p=0.9, seed=3)
    assert chat.choices[0].message.role == "assistant" and isinstance(chat.choices[0].message.content, str)


def test_streaming_sends_chunks_and_ends_with_done(server):
    client = OpenAI(base_url=f"{server}/v1", api_key="unused")
    chunks = list(client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hello"}], max_tokens=6,
                                                 temperature=0, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hello"}], max_tokens=6, temperature=0)
    assert streamed == whole.choices[0].message.content
    raw = httpx.post(f"{server}/v1/completions", json={"prompt": "a", "max_tokens": 3, "stream": True}).text
    assert raw.rstrip().endswith("data: [DONE]")


def test_bad_requests_get_4xx_and_the_server_stays_up(server):
    assert httpx.post(f"{server}/v1/completions", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert httpx.post(f"{server}/v1/chat/completions", json={"messages": []}).status_code == 400
    over = httpx.post(f"{server}/v1/completions", json={"prompt": "a", "max_tokens": MAX_TOKENS + 1})
    assert over.status_code == 400 and "limit" in over.json()["error"]["message"]
    assert httpx.post(f"{server}/v1/completions", content=b"x" * (300 * 1024), headers={"content-type": "application/json"}).status_code == 413
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    assert "ltm_tokens_generated_total" in httpx.get(f"{server}/metrics").text


def test_a_bounded_load_ends_with_zero_failures(server):
    def one(i: int) -> int:
        return httpx.post(f"{server}/v1/completions", json={"prompt": f"Question {i}?", "max_tokens": 4, "seed": i}, timeout=60).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(200)))
    assert codes == [200] * 200
    text = httpx.get(f"{server}/metrics").text.splitlines()
    metrics = dict(line.split() for line in text if not line.startswith("#"))
    assert int(metrics["ltm_batch_rows_total"]) > int(metrics["ltm_batch_steps_total"]) > 0  # steps carried several requests
    assert int(metrics['ltm_requests_total{path="/v1/completions"}']) >= 200
    families = {name.split("{")[0] for name in metrics}
    assert {line for line in text if line.startswith("#")} == {f"# TYPE {family} counter" for family in families}


def test_api_key_and_binding(exported):
    server, url = serve(create_app(Engine(exported), api_key="sesame"))
    try:
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer sesame"}).status_code == 200
    finally:
        server.should_exit = True
    with pytest.raises(ValueError, match="API key"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "sesame")
    check_binding("127.0.0.1", None)


def test_terminal_chat_streams_answers_and_forgets_on_reset(exported, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/reset\nhello\n/exit\nnever read\n"))
    assert main(["chat", str(exported), "--max-tokens", "5", "--temperature", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    answers = [line for line in lines if line.startswith("ltm> ")]
    # After /reset the same question meets the same empty history, so greedy decoding repeats itself.
    assert len(answers) == 2 and answers[0] == answers[1] and "(conversation forgotten)" in lines
    assert lines[-1] == "bye (2 turns)"
