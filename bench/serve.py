"""Generation speed of `ltm serve`'s engine next to plain transformers `generate` on the same
model, in the same process.

    python bench/serve.py --model runs/serve-model-hf [--model ...] [--tokens 128]

For each model: tokens/s of one request at a time (batch 1), and of 16 requests at once (each
client thread streams its own request; the engine batches them), next to `generate` at batch 1
and at batch 16 (one padded batch: the best case for transformers, which has no request queue).
Every request is a 32-token prompt cut from the bundled corpus and asks for `--tokens` new tokens
greedily; end-of-text is ignored on both sides so that every request yields exactly that many.
Ours runs through Engine.stream (tokenising, decoding text and stop-string checks included), in
bf16 on a GPU with its CUDA-graph decoding step; transformers gets the same bf16 weights.
bench/configs/serve-model.yaml trains the model measured in bench/results/serve.*.jsonl.
"""

from __future__ import annotations

import argparse
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
    engine.batcher.eos = None  # fixed-length requests (see the docstring)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", default=[], help="an exported folder (ltm export)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--concurrent", type=int, default=16)
    args = parser.parse_args()
    quiet_transformers()
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
