"""Generation speed of `ltm serve`'s engine next to plain transformers `generate` on the same
model, in the same process; and (--load) a load test of the server itself.

    python bench/serve.py --model runs/serve-model-hf [--model ...] [--tokens 128]
    python bench/serve.py --load --model runs/quickstart-…/hf [--requests 200 --streams 64 --concurrent 16]

For each model: tokens/s of one request at a time (batch 1), and of 16 requests at once (each
client thread streams its own request; the engine batches them), next to `generate` at batch 1
and at batch 16 (one padded batch: the best case for transformers, which has no request queue).
Every request is a 32-token prompt cut from the bundled corpus and asks for `--tokens` new tokens
greedily; end-of-text is ignored on both sides so that every request yields exactly that many.
Ours runs through Engine.stream (tokenising, decoding text and stop-string checks included), in
bf16 on a GPU with its CUDA-graph decoding step; transformers gets the same bf16 weights.
bench/configs/serve-model.yaml trains the model measured in bench/results/serve.*.jsonl.

--load starts `ltm serve` in its own process on 127.0.0.1 (a fresh memory folder) and sends it,
from this process over keep-alive connections: `--requests` completions at `--concurrent` at once
(sampled, `--load-tokens` each, a seed per request), then `--streams` streamed chat completions
at `--concurrent` at once (with stream_options.include_usage), then 450 scene-memory adds one after
another. A failure is any answer that is not 200, a completion without `length` or `stop`, or a
stream that does not end with a usage chunk and [DONE] or that carries an error event. It reports
failures, requests/s, tokens/s, latency percentiles, time to the first streamed token, and the
time of a memory add at the start and at the end (adds append, so it should not grow).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from common import ROOT, emit, quiet_transformers

BENCH = "serve"


def prompts(tokenizer, n: int, length: int = 32) -> list[list[int]]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples" / "corpus").rglob("*.md")))
    ids = tokenizer.encode(text, add_special_tokens=False)
    step = max(1, (len(ids) - length) // n)
    return [ids[i * step : i * step + length] for i in range(n)]


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_ours(folder: Path, asks: list[list[int]], tokens: int, concurrent: int) -> tuple[float, float]:
    from ltm.serve.engine import Engine

    engine = Engine(folder, batch=concurrent)
    engine.batcher.stop_ids = frozenset()  # fixed-length requests (see the docstring)
    texts = [engine.tokenizer.decode(ids) for ids in asks]

    def one(text: str) -> int:
        return sum(1 for _ in engine.stream(text, tokens, 0.0, 1.0, [], 0))

    one(texts[0])  # warm-up
    produced = []
    single = timed(lambda: produced.extend(one(t) for t in texts[:3]))
    batch1 = sum(produced) / single
    with ThreadPoolExecutor(concurrent) as pool:
        list(pool.map(one, texts[:concurrent]))  # warm-up of every bucket's path
        produced = []
        crowd = timed(lambda: produced.extend(pool.map(one, texts[:concurrent])))
    return batch1, sum(produced) / crowd


def measure_transformers(folder: Path, asks: list[list[int]], tokens: int, concurrent: int) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=dtype).to(device).eval()
    settings = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)

    def run(rows: list[list[int]]) -> int:
        ids = torch.tensor(rows, device=device)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **settings)
        return (out.shape[1] - ids.shape[1]) * len(rows)

    run(asks[:1])  # warm-up
    produced = []
    single = timed(lambda: produced.extend(run(asks[i : i + 1]) for i in range(3)))
    run(asks[:concurrent])
    batch = []
    crowd = timed(lambda: batch.append(run(asks[:concurrent])))
    return sum(produced) / single, batch[0] / crowd


def start_server(folder: Path, memory: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ltm.cli", "serve", str(folder), "--port", str(port), "--memory-dir", str(memory)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"ltm serve exited: {server.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    sys.exit("ltm serve did not answer /health within 300 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_completions(client, url: str, name: str, requests: int, concurrent: int, tokens: int) -> dict:
    def one(i: int) -> tuple[bool, float, int]:
        started = time.perf_counter()
        try:
            answer = client.post(f"{url}/v1/completions", json={"model": name, "prompt": f"Question {i}: can a thing be measured?",
                                                                 "max_tokens": tokens, "temperature": 0.8, "seed": i})
            body = answer.json()
            ok = answer.status_code == 200 and body["choices"][0]["finish_reason"] in ("length", "stop")
            return ok, time.perf_counter() - started, body.get("usage", {}).get("completion_tokens", 0) if ok else 0
        except Exception:  # noqa: BLE001 — a failure to count, not to stop on
            return False, time.perf_counter() - started, 0

    with ThreadPoolExecutor(concurrent) as pool:
        started = time.perf_counter()
        results = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - started
    latencies = [r[1] for r in results]
    return {"failures": sum(not r[0] for r in results), "wall": wall, "tokens": sum(r[2] for r in results),
            "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)}


def load_streams(client, url: str, name: str, streams: int, concurrent: int, tokens: int) -> dict:
    def one(i: int) -> tuple[bool, float, float, int]:
        body = {"model": name, "messages": [{"role": "user", "content": f"Tell me about the sea ({i})."}], "max_tokens": tokens,
                "temperature": 0.8, "seed": i, "stream": True, "stream_options": {"include_usage": True}}
        started, first, usage, done, error = time.perf_counter(), None, None, False, False
        try:
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as answer:
                for line in answer.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: "):]
                    if data == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(data)
                    error |= "error" in chunk
                    if chunk.get("usage"):
                        usage = chunk["usage"]["completion_tokens"]
                    elif first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        first = time.perf_counter() - started
                ok = answer.status_code == 200 and done and not error and usage is not None
        except Exception:  # noqa: BLE001 — a failure to count, not to stop on
            ok = False
        return ok, first if first is not None else float("nan"), time.perf_counter() - started, usage or 0

    with ThreadPoolExecutor(concurrent) as pool:
        started = time.perf_counter()
        results = list(pool.map(one, range(streams)))
        wall = time.perf_counter() - started
    firsts = [r[1] for r in results if r[1] == r[1]]
    return {"failures": sum(not r[0] for r in results), "wall": wall, "tokens": sum(r[3] for r in results),
            "ttft_p50": percentile(firsts, 0.5) if firsts else float("nan"), "ttft_p95": percentile(firsts, 0.95) if firsts else float("nan"),
            "p50": percentile([r[2] for r in results], 0.5)}


def load_memory(client, url: str, adds: int = 450, window: int = 50) -> tuple[float, float, int]:
    """Seconds per add over the first and the last `window` adds, and the failures."""
    times, failures = [], 0
    client.post(f"{url}/v1/memory", json={"namespace": "warm-up", "text": "the embedder's first call loads its libraries"})
    for i in range(adds):
        text = f"Scene {i}: THEON weighs a stone; the scale presses back and the stone stays a stone. " * 3
        started = time.perf_counter()
        failures += client.post(f"{url}/v1/memory", json={"namespace": "bench", "text": text, "meta": {"i": i}}).status_code != 200
        times.append(time.perf_counter() - started)
    return statistics.mean(times[:window]), statistics.mean(times[-window:]), failures


def load_test(folder: Path, requests: int, streams: int, concurrent: int, tokens: int) -> None:
    import httpx

    busy = round(os.getloadavg()[0], 1)  # other work on the machine, for the record: the cores are shared
    with tempfile.TemporaryDirectory() as memory:
        server, url = start_server(folder, Path(memory))
        try:
            limits = httpx.Limits(max_connections=concurrent, max_keepalive_connections=concurrent)
            with httpx.Client(timeout=600, limits=limits) as client:
                name = client.get(f"{url}/v1/models").json()["data"][0]["id"]
                load_completions(client, url, name, concurrent, concurrent, tokens)  # warm-up
                done = load_completions(client, url, name, requests, concurrent, tokens)
                streamed = load_streams(client, url, name, streams, concurrent, tokens)
                first, last, memory_failures = load_memory(client, url)
                alive = client.get(f"{url}/health").status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=60)
    shape = f"{folder.name}, {requests} completions and {streams} streams at {concurrent} concurrent, {tokens} tokens each, sampled"
    note = (f"`python bench/serve.py --load --model {folder} --requests {requests} --streams {streams} --concurrent {concurrent} "
            f"--load-tokens {tokens}`; load average {busy} when it started")
    emit(BENCH, "load_completion_failures", done["failures"], "requests", target=0, shape=shape, requests=requests, note=note)
    emit(BENCH, "load_completions_per_s", requests / done["wall"], "requests/s", shape=shape, note=note)
    emit(BENCH, "load_completion_tokens_per_s", done["tokens"] / done["wall"], "tokens/s", shape=shape, note=note)
    emit(BENCH, "load_completion_latency_p50", done["p50"] * 1000, "ms", shape=shape, note=note)
    emit(BENCH, "load_completion_latency_p95", done["p95"] * 1000, "ms", shape=shape, note=note)
    emit(BENCH, "load_stream_failures", streamed["failures"], "streams", target=0, shape=shape, streams=streams, note=note)
    emit(BENCH, "load_stream_tokens_per_s", streamed["tokens"] / streamed["wall"], "tokens/s", shape=shape, note=note)
    emit(BENCH, "load_stream_first_token_p50", streamed["ttft_p50"] * 1000, "ms", shape=shape, note=note)
    emit(BENCH, "load_stream_first_token_p95", streamed["ttft_p95"] * 1000, "ms", shape=shape, note=note)
    emit(BENCH, "load_memory_add_first_50", first * 1000, "ms", shape="450 adds of ~270-character scenes to one namespace, over HTTP",
         failures=memory_failures, note=note)
    emit(BENCH, "load_memory_add_last_50", last * 1000, "ms", shape="450 adds of ~270-character scenes to one namespace, over HTTP",
         failures=memory_failures, note=note)
    if not alive or done["failures"] or streamed["failures"] or memory_failures:
        sys.exit("the load test had failures (see above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", default=[], help="an exported folder (ltm export)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--load", action="store_true", help="load-test `ltm serve` instead of measuring the engine")
    parser.add_argument("--requests", type=int, default=200, help="--load: completions")
    parser.add_argument("--streams", type=int, default=64, help="--load: streamed chat completions")
    parser.add_argument("--load-tokens", type=int, default=32, help="--load: max_tokens of each request")
    args = parser.parse_args()
    quiet_transformers()
    if args.load:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        for folder in args.model:
            load_test(folder, args.requests, args.streams, args.concurrent, args.load_tokens)
        return
    from transformers import AutoTokenizer

    for folder in args.model:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        asks = prompts(tokenizer, args.concurrent)
        ours1, ours_n = measure_ours(folder, asks, args.tokens, args.concurrent)
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        theirs1, theirs_n = measure_transformers(folder, asks, args.tokens, args.concurrent)
        shape = f"{folder.name}, {args.tokens} new tokens per request, 32-token prompts"
        emit(BENCH, "tokens_per_s_batch1", ours1, "tokens/s", shape=shape)
        emit(BENCH, "transformers_tokens_per_s_batch1", theirs1, "tokens/s", shape=shape)
        emit(BENCH, "speedup_vs_transformers_batch1", ours1 / theirs1, "ratio", target=3.0, shape=shape)
        emit(BENCH, f"tokens_per_s_{args.concurrent}_concurrent", ours_n, "tokens/s", shape=shape)
        emit(BENCH, f"transformers_tokens_per_s_batch{args.concurrent}", theirs_n, "tokens/s", shape=shape)
        emit(BENCH, f"speedup_vs_transformers_{args.concurrent}", ours_n / theirs_n, "ratio", shape=shape)


if __name__ == "__main__":
    main()
