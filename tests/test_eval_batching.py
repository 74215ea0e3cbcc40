"""Eval's batched passes against one-at-a-time references on tiny random models: held-out and
WikiText bits per byte, the likelihood scorer (QA multiple choice, cloze, the memorization gap),
greedy answers and memorization, the probes' sampled continuations. Sorting, packing many short
sequences to a pass and padding must not move any of them beyond float noise."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltm.dataset.reader import eval_windows
from ltm.eval.batches import token_batches
from ltm.eval.bpb import token_nll
from ltm.eval.likelihood import continuation_logprobs
from ltm.eval.memorization import PREFIX, SUFFIX, extraction
from ltm.eval.sample import continuations
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.numerics import bf16_autocast, eval_autocast

VOCAB = 97
MARKERS = ["scene", "/scene", "header", "body", "tension:low", "tension:medium", "tension:high",
           "loop:claim", "loop:doubt", "loop:inversion", "loop:new", "lens:plain", "lens:critic"]
IDS = {name: 80 + i for i, name in enumerate(MARKERS)}
EXTRAS = {"plain": {}, "scene-aware": {"scene_state": True, "loop_core_layers": 1, "loop_prelude_layers": 1, "loop_max_steps": 2,
                                       "think_steps": 2}}


@pytest.fixture(scope="module", params=list(EXTRAS))
def model(request):
    torch.manual_seed(0)
    return LtmForCausalLM(LtmConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                    max_position_embeddings=80, scene_token_ids=IDS, **EXTRAS[request.param])).eval()


def test_token_batches_pack_short_rows_and_keep_the_budget():
    widths = [2, 2, 3, 5, 9, 30]
    parts = token_batches(widths, 10)
    assert [widths[p] for p in parts] == [[2, 2, 3], [5], [9], [30]]  # 30 is over budget: a pass of its own
    assert token_batches([], 10) == []


@torch.no_grad()
def test_token_nll_equals_window_by_window(model):
    tokens = np.random.default_rng(0).integers(0, VOCAB, 203)  # the last window is shorter
    batched = token_nll(model, tokens, seq_len=16, batch_size=3)
    reference = np.full(len(tokens), np.nan)
    for k, window in enumerate(eval_windows(tokens, 16)):
        logits = model(torch.from_numpy(window[None, :-1])).logits[0]
        reference[k * 16 + 1 : k * 16 + len(window)] = F.cross_entropy(logits, torch.from_numpy(window[1:]), reduction="none").numpy()
    assert np.isnan(batched[0]) and not np.isnan(batched[1:]).any()
    assert np.allclose(batched, reference, atol=1e-4, equal_nan=True)


@torch.no_grad()
def test_the_likelihood_scorer_equals_each_pair_scored_alone(model):
    rng = np.random.default_rng(1)
    contexts = [rng.integers(0, VOCAB, rng.integers(1, 30)).tolist() for _ in range(60)]
    options = [rng.integers(0, VOCAB, rng.integers(1, 12)).tolist() for _ in range(60)]
    batched, count = continuation_logprobs(model, contexts, options, batch_size=2)  # many short pairs to a pass, many passes
    for context, option, got, n in zip(contexts, options, batched, count):
        sequence = torch.tensor([context + option])
        logprob = torch.log_softmax(model(sequence[:, :-1]).logits[0], -1)
        want = sum(logprob[len(context) - 1 + j, t].item() for j, t in enumerate(option))
        assert got == pytest.approx(want, abs=1e-4) and n == len(option)


def test_greedy_and_sampled_continuations_of_many_prompts_equal_each_prompt_alone(model):
    rng = np.random.default_rng(2)
    prompts = [rng.integers(0, VOCAB, rng.integers(1, 75)).tolist() for _ in range(80)]  # two batches, some rows hit the context
    greedy = continuations(model, prompts, 12, 0.0, None, None, seed=5)
    for prompt, row in zip(prompts, greedy):
        assert row == model.generate_ids(torch.tensor([prompt]), 12)[0].tolist()
    sampled = continuations(model, prompts, 12, 0.9, 20, None, seed=5)
    assert sampled[::8] == [continuations(model, [prompts[i]], 12, 0.9, 20, None, seed=5, first_row=i)[0] for i in range(0, len(prompts), 8)]


def test_prompts_that_fill_the_context_get_nothing_new(model):
    full = list(range(80))  # the model's whole context (an initiation reply prompt with a long history)
    assert continuations(model, [full, full[:10]], 4, 0.0, None, None, seed=1)[0] == []
    assert continuations(model, [full, full], 4, 0.9, 20, None, seed=1) == [[], []]  # a batch of only such prompts


def test_memorization_extraction_equals_greedy_decoding_one_sequence_at_a_time(model):
    sequences = np.random.default_rng(3).integers(0, VOCAB, (20, PREFIX + SUFFIX))
    sequences[:5, PREFIX:] = [model.generate_ids(torch.tensor(s[None, :PREFIX]), SUFFIX)[0].numpy() for s in sequences[:5]]
    exact, matched = extraction(model, sequences)
    for s, e, m in zip(sequences, exact, matched):
        generated = model.generate_ids(torch.tensor(s[None, :PREFIX]), SUFFIX)[0].numpy()
        assert e == (generated == s[PREFIX:]).all() and m == pytest.approx((generated == s[PREFIX:]).mean())
    assert exact[:5].all() and not exact[5:].any()


def test_eval_computes_in_the_precision_training_chose(model):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert bf16_autocast(None, gpu) and bf16_autocast("auto", gpu) and bf16_autocast("bf16", cpu)
    assert not bf16_autocast("fp32", gpu) and not bf16_autocast(None, cpu) and not bf16_autocast("auto", cpu)
    prompts = [[1, 2, 3], list(range(1, 30))]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the static cache holds keys in the autocast dtype
        rows = continuations(model, prompts, 6, 0.0, None, None, seed=0)
        logprob, _ = continuation_logprobs(model, prompts, [[4, 5], [6]])
    assert [len(r) for r in rows] == [6, 6] and np.isfinite(logprob).all() and (logprob < 0).all()


def test_eval_precision_overrides_training_s_choice():
    a, b = torch.randn(4, 8), torch.randn(8, 4)

    def product_dtype(eval_precision, train_precision):
        with eval_autocast(eval_precision, train_precision, torch.device("cpu")):
            return torch.mm(a, b).dtype

    assert product_dtype("auto", None) == torch.float32  # as training on a CPU: fp32
    assert product_dtype("auto", "bf16") == torch.bfloat16
    assert product_dtype("bf16", "fp32") == torch.bfloat16
    assert product_dtype("fp32", "bf16") == torch.float32
