import json
import math

import numpy as np
import pytest
import torch

from ltm import stages
from ltm.config import load_config
from ltm.eval.bpb import model_bpb, unigram_bpb
from ltm.train.data import SequentialBatches, eval_windows
from ltm.train.loop import lr_at


@pytest.fixture
def dataset(tmp_path, tiny_config):
    config = load_config(tiny_config)
    stages.ingest(config.ingest.paths, tmp_path / "docs.jsonl")
    stages.scenes(tmp_path / "docs.jsonl", tmp_path / "scenes.jsonl", config)
    stages.build(config, tmp_path / "scenes.jsonl", tmp_path / "ds")
    return config, tmp_path / "ds"


def test_training_lowers_the_loss_and_writes_metrics(dataset, tmp_path):
    from ltm.train import train

    config, ds = dataset
    checkpoint = train(config, ds, tmp_path / "train")
    metrics = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 31))
    assert np.mean([m["loss"] for m in metrics[-5:]]) < metrics[0]["loss"] - 0.5
    assert [m["step"] for m in metrics if "heldout_loss" in m] == [10, 20, 30]
    assert (checkpoint / "model.safetensors").exists()


def test_batches_are_consecutive_windows_that_wrap():
    tokens = np.arange(41, dtype=np.uint16)
    batches = SequentialBatches(tokens, seq_len=4, batch_size=3)
    assert batches.windows == 10
    x, y = batches.batch(0)
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    x, _ = batches.batch(3)  # windows 9, 0, 1
    assert x[:, 0].tolist() == [36, 0, 4]


def test_lr_schedule_warms_up_then_decays_to_the_floor(tiny_config):
    train = load_config(tiny_config).train
    lrs = [lr_at(s, train) for s in range(train.steps)]
    assert lrs[0] == pytest.approx(train.lr / train.warmup_steps)
    assert max(lrs) == pytest.approx(train.lr)
    assert lrs[-1] == pytest.approx(train.lr * train.min_lr_ratio, rel=0.05)


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
