"""The OpenAI-compatible server, driven by the official `openai` package over loopback."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from openai import OpenAI

from ltm.cli import main
from ltm.serve.app import MAX_TOKENS, check_binding, create_app
from ltm.serve.engine import Engine


@pytest.fixture(scope="module")
def exported(tmp_path_factory, request):
    from conftest import TINY_CONFIG, write_corpus
    import yaml

    tmp = tmp_path_factory.mktemp("serve")
    corpus = write_corpus(tmp / "corpus")
    config = dict(TINY_CONFIG, ingest={"paths": [str(corpus)]}, out_dir=str(tmp / "runs"))
    config["model"] = dict(config["model"], max_seq_len=64)
    config["eval"] = {"memorization_per_bucket": 2, "samples_per_prompt": 1, "sample_tokens": 4, "data_sample_tokens": 1000}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--run-dir", str(tmp / "run")]) == 0
    assert main(["export", str(tmp / "run"), "-o", str(tmp / "hf")]) == 0
    return tmp / "hf"


def _serve(app):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(exported):
    server, url = _serve(create_app(Engine(exported)))
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
    assert chunks[-1].choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hello"}], max_tokens=6, temperature=0)
    assert streamed == whole.choices[0].message.content
    raw = httpx.post(f"{server}/v1/completions", json={"prompt": "a", "max_tokens": 3, "stream": True}).text
    assert raw.rstrip().endswith("data: [DONE]")


def test_bad_requests_get_4xx_and_the_server_stays_up(server):
    assert httpx.post(f"{server}/v1/completions", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert httpx.post(f"{server}/v1/chat/completions", json={"messages": []}).status_code == 422
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


def test_api_key_and_binding(exported):
    server, url = _serve(create_app(Engine(exported), api_key="sesame"))
    try:
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer sesame"}).status_code == 200
    finally:
        server.should_exit = True
    with pytest.raises(ValueError, match="API key"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "sesame")
    check_binding("127.0.0.1", None)
