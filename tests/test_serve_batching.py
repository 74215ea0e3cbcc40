"""Continuous batching: requests decoded together give what each would get alone."""

import pytest
import torch

from ltm.model import LtmConfig, LtmForCausalLM
from ltm.serve.batching import DONE, Batcher, Request, buckets


def tiny(**extras) -> LtmForCausalLM:
    torch.manual_seed(0)
    config = LtmConfig(vocab_size=61, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=48, **extras)
    return LtmForCausalLM(config).eval()


def prompts(n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(5)
    return [torch.randint(1, 61, (int(torch.randint(3, 15, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


def collect(request: Request) -> list[int]:
    out = []
    while (token := request.tokens.get(timeout=60)) is not DONE:
        assert not isinstance(token, Exception), token
        out.append(token)
    return out


def request(ids, max_tokens=10, temperature=0.0, seed=0) -> Request:
    return Request(ids, max_tokens, temperature, 1.0, torch.Generator().manual_seed(seed))


def test_buckets_cover_every_row_count():
    assert buckets(16) == [1, 2, 4, 8, 16] and buckets(6) == [1, 2, 4, 6] and buckets(1) == [1]


@pytest.mark.parametrize("extras", [{}, {"loop_core_layers": 1, "loop_prelude_layers": 1, "think_steps": 2}])
def test_concurrent_greedy_requests_equal_each_request_alone(extras):
    model = tiny(**extras)
    batcher = Batcher(model, rows=4, stop_ids=(), cuda_graphs=False)
    asks = prompts(7)  # more requests than rows: some wait for a free row
    alone = [model.generate_ids(torch.tensor([ids]), 10)[0].tolist() for ids in asks]
    requests = [request(ids) for ids in asks]
    for r in requests:
        batcher.submit(r)
    assert [collect(r) for r in requests] == alone
    assert batcher.rows_stepped / batcher.steps > 1.5  # the steps really carried several requests


def test_a_seeded_sampled_request_is_the_same_alone_and_in_a_crowd():
    batcher = Batcher(tiny(), rows=4, stop_ids=(), cuda_graphs=False)
    alone = request(prompts(1)[0], temperature=0.9, seed=42)
    batcher.submit(alone)
    first = collect(alone)
    crowd = [request(ids, temperature=1.0, seed=i) for i, ids in enumerate(prompts(5))]
    again = request(prompts(1)[0], temperature=0.9, seed=42)
    for r in [crowd[0], crowd[1], again, *crowd[2:]]:
        batcher.submit(r)
    assert collect(again) == first and len(first) == 10
    for r in crowd:
        collect(r)


def test_limits_eos_and_cancellation_free_their_rows():
    model = tiny()
    first = model.generate_ids(torch.tensor([prompts(1)[0]]), 1)[0, 0].item()
    batcher = Batcher(model, rows=2, stop_ids=[first], cuda_graphs=False)
    ended = request(prompts(1)[0])
    batcher.submit(ended)
    assert collect(ended) == []  # its first token is eos
    full = request(list(range(1, 46)), max_tokens=100)  # 45 of 48 positions taken: 3 tokens fit
    batcher.submit(full)
    assert len(collect(full)) == 3
    gone = request(prompts(2)[1], max_tokens=40)
    batcher.submit(gone)
    gone.tokens.get(timeout=60)
    gone.cancelled = True
    assert len(collect(gone)) < 39  # ended early with DONE: its row was given back
    left = [request(ids) for ids in prompts(2)]
    for r in left:
        batcher.submit(r)
    for r in left:
        collect(r)
    assert not batcher.running


def test_stop_ends_the_thread_and_the_running_requests():
    batcher = Batcher(tiny(), rows=2, stop_ids=(), cuda_graphs=False)
    running = request(prompts(1)[0], max_tokens=30)
    batcher.submit(running)
    running.tokens.get(timeout=60)
    batcher.stop()
    assert not batcher.thread.is_alive()
    assert len(collect(running)) < 29  # it got DONE early instead of waiting forever


def test_text_streamed_token_by_token_is_the_whole_decode(exported):
    from transformers import AutoTokenizer

    from ltm.serve.engine import TextStream

    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    text = "Помним ли мы прошлое? — Don't we «rebuild» it… 42 % 🙂 each time?"
    ids = tokenizer.encode(text, add_special_tokens=False)
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, len(tokenizer), (200,), generator=g).tolist()  # what a random model emits, split bytes included
    for sequence in (ids, noise, ids + noise + ids):
        stream = TextStream(tokenizer)
        streamed = "".join(stream.push(t) for t in sequence) + stream.finish()
        assert streamed == tokenizer.decode(sequence, skip_special_tokens=True)
