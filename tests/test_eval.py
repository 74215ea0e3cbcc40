"""Evaluation metrics on models whose answer is known."""

import math

import numpy as np
import pytest
import torch

from ltm import stages
from ltm.eval.bpb import model_bpb, unigram_bpb
from ltm.train.data import eval_windows


class _Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        from ltm.model import CausalOutput

        return CausalOutput(torch.zeros(*x.shape, self.vocab))


def test_bpb_of_a_uniform_model_is_log2_vocab_per_token_over_bytes():
    vocab, lengths = 8, np.array([0, 1, 1, 2, 2, 3, 3, 4])
    tokens = np.array([0, 1, 3, 5, 7, 2, 0, 6, 4, 1], dtype=np.int64)
    bpb, n_tokens, n_bytes = model_bpb(_Uniform(vocab), tokens, lengths, seq_len=4)
    targets = np.concatenate([w[1:] for w in eval_windows(tokens, 4)])
    targets = targets[lengths[targets] > 0]
    assert n_tokens == len(targets) and n_bytes == lengths[targets].sum()
    assert bpb == pytest.approx(n_tokens * math.log2(vocab) / n_bytes)


def test_unigram_bpb_rewards_matching_frequencies():
    lengths = np.ones(4, dtype=np.int64)
    frequent = np.array([1] * 90 + [2] * 10)
    assert unigram_bpb(frequent, frequent, lengths, 16) < unigram_bpb(frequent, np.array([2] * 100), lengths, 16)
    # With add-one smoothing the unigram of a one-token stream is close to, not exactly, 0 bits.
    assert unigram_bpb(np.ones(1000, dtype=np.int64), np.ones(50, dtype=np.int64), lengths, 16) < 0.01


def test_eval_refuses_a_run_without_checkpoint(tmp_path, tiny_config):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(tiny_config.read_text())
    with pytest.raises(stages.StageError, match="no trained checkpoint"):
        stages.evaluate_run(run)
