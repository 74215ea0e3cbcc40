"""Evaluation metrics on models whose answer is known, and the whole evaluation on tiny runs."""

import json
import math

import numpy as np
import pytest
import torch
import yaml

from ltm import stages
from ltm.cli import main
from ltm.eval.bpb import bits_per_byte, range_mask, token_nll, unigram_nll
from ltm.eval.diversity import diversity
from ltm.dataset.reader import eval_windows, repetition_bucket, training_reads
from ltm.eval.memorization import sample_sequences
from ltm.train.data import ShardBatches


class _Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def parameters(self):
        return iter([torch.zeros(1)])

    def forward(self, x):
        from ltm.model import CausalOutput

        return CausalOutput(torch.zeros(*x.shape, self.vocab))


def test_bpb_of_a_uniform_model_is_log2_vocab_per_token_over_bytes():
    vocab, lengths = 8, np.array([0, 1, 1, 2, 2, 3, 3, 4])
    tokens = np.array([0, 1, 3, 5, 7, 2, 0, 6, 4, 1], dtype=np.int64)
    bpb, n_tokens, n_bytes = bits_per_byte(token_nll(_Uniform(vocab), tokens, seq_len=4), tokens, lengths)
    targets = np.concatenate([w[1:] for w in eval_windows(tokens, 4)])
    targets = targets[lengths[targets] > 0]
    assert n_tokens == len(targets) and n_bytes == lengths[targets].sum()
    assert bpb == pytest.approx(n_tokens * math.log2(vocab) / n_bytes)
    # A group is the tokens inside its ranges.
    mask = range_mask(len(tokens), np.array([2]), np.array([6]))
    assert mask.tolist() == [False, False, True, True, True, True, False, False, False, False]
    _, group_tokens, group_bytes = bits_per_byte(token_nll(_Uniform(vocab), tokens, seq_len=4), tokens, lengths, mask)
    assert group_bytes == lengths[tokens[2:6]].sum() and group_tokens == int((lengths[tokens[2:6]] > 0).sum())


def test_unigram_bpb_rewards_matching_frequencies():
    lengths = np.ones(4, dtype=np.int64)

    def unigram(train, heldout):
        return bits_per_byte(unigram_nll(np.bincount(train, minlength=4), heldout), heldout, lengths)[0]

    frequent = np.array([1] * 90 + [2] * 10)
    assert unigram(frequent, frequent) < unigram(frequent, np.array([2] * 100))
    # With add-one smoothing the unigram of a one-token stream is close to, not exactly, 0 bits.
    assert unigram(np.ones(1000, dtype=np.int64), np.ones(50, dtype=np.int64)) < 0.01


def test_eval_refuses_a_run_without_checkpoint(tmp_path, tiny_config):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(tiny_config.read_text())
    with pytest.raises(stages.StageError, match="no trained checkpoint"):
        stages.evaluate_run(run)


# --- the whole evaluation on tiny runs ---------------------------------------------------------------

PASSAGES = [
    "The river does not remember the rain that made it, yet every bend of it is a memory of some old flood. "
    "Those who live on its banks learn to read the bends the way others read letters from home, slowly and twice.",
    "A question asked too early is a stone thrown into fog: you hear it land, but you cannot see where. "
    "Wait until the fog lifts, the old teacher said, and then ask again, and watch the stone all the way down.",
    "Память не хранит прошлое, она его пересказывает, и каждый пересказ чуть глаже предыдущего. "
    "Поэтому старые люди рассказывают одну и ту же историю всё лучше, а помнят её всё хуже.",
    "Вопрос, заданный вовремя, похож на ключ, который сам находит замок. "
    "Но если торопиться, ключ ломается, и приходится долго искать другой, уже не такой точный.",
]


def memorizing_run(tmp_path, steps: int, name: str):
    corpus = tmp_path / f"corpus-{name}"
    corpus.mkdir()
    for i, text in enumerate(PASSAGES):
        (corpus / f"text_{i}.md").write_text(f"# T{i}\n\n{text}\n", encoding="utf-8")
    config = {
        "name": name, "seed": 3, "out_dir": str(tmp_path / "runs"), "ingest": {"paths": [str(corpus)]},
        "scenes": {"min_tokens": 5, "max_tokens": 200, "link_k": 0},
        "build": {"vocab_size": 300, "heldout_docs": 0.3, "heldout_lenses": ["plain", "scene"]},
        "model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 96},
        "train": {"steps": steps, "batch_size": 4, "lr": 1e-2, "warmup_steps": 5, "eval_every": max(steps, 1), "logger": "none"},
        "eval": {"memorization_per_bucket": 16, "samples_per_prompt": 1, "sample_tokens": 16, "data_sample_tokens": 2000,
                 "wikitext": str(tmp_path / "missing-wikitext.txt")},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    run_dir = tmp_path / "runs" / name
    assert main(["run", str(path), "--run-dir", str(run_dir)]) == 0
    return run_dir, json.loads((run_dir / "eval.json").read_text())


def test_a_model_trained_to_memorize_continues_its_training_text_and_the_untrained_one_does_not(tmp_path):
    run_dir, result = memorizing_run(tmp_path, steps=800, name="memorize")
    memo = result["memorization"]
    assert memo["overall"]["n"] >= 2
    assert memo["overall"]["exact"] >= 0.5 and memo["overall"]["token_match"] >= 0.8
    assert memo["overall"]["control_exact"] == 0.0 and memo["overall"]["control_token_match"] < 0.1
    assert memo["control"] == "untrained"
    assert set(memo["by_times_seen"]) and all(b.split("-")[0].isdigit() for b in memo["by_times_seen"])
    # The rest of the contract, on the same run.
    assert result["schema"] == "ltm.eval/2" and isinstance(result["heldout_bpb"], float)
    assert set(result["heldout_by"]) == {"document", "author", "phase", "language", "lens"}
    assert set(result["heldout_by"]["language"]) == {"en", "ru"}
    # The loss gap: the memorized training sequences are far easier than their held-out matches.
    gap = memo["gap_by_times_seen"]
    assert set(gap) == set(memo["by_times_seen"]) and all(g["gap"] > 1.0 and g["train_nll"] < 1.0 for g in gap.values())
    cloze = result["cloze"]
    assert set(cloze["by_split"]) == {"heldout", "train"} and cloze["paraphrased"].startswith("not measured")
    assert cloze["by_split"]["train"]["accuracy"] > cloze["by_split"]["train"]["chance"]
    assert set(result["heldout_by"]["lens"]) == {"plain", "scene"}
    assert result["wikitext"]["skipped"].endswith("not found")
    assert set(result["probes"]) and all({"model_rate", "data_rate", "model_events", "model_rate_ci95"} <= set(v) for v in result["probes"].values())
    assert {"distinct_1", "distinct_2", "repetition_rate"} <= set(result["diversity"])
    html = (run_dir / "report.html").read_text()
    assert "Memorization vs times seen" in html and "Thinking-behaviour probes" in html
    # A control run: the memorizing model's own run as control makes the control memorize too.
    assert main(["eval", str(run_dir), "-o", str(tmp_path / "self.json"), "--control", str(run_dir)]) == 0
    assert json.loads((tmp_path / "self.json").read_text())["memorization"]["overall"]["control_exact"] >= 0.5


def test_bad_input_is_named(tmp_path, capsys):
    run_dir, _ = memorizing_run(tmp_path, steps=2, name="short")
    (run_dir / "dataset" / "manifest.json").rename(run_dir / "dataset" / "manifest.moved")
    assert main(["eval", str(run_dir)]) == 1
    assert "no dataset manifest" in capsys.readouterr().err
    (run_dir / "dataset" / "manifest.moved").rename(run_dir / "dataset" / "manifest.json")
    # A model whose vocabulary is not the dataset's.
    manifest_path = run_dir / "dataset" / "manifest.json"
    original = manifest_path.read_text()
    manifest = json.loads(original)
    manifest_path.write_text(json.dumps(manifest | {"vocab_size": manifest["vocab_size"] + 1}))
    assert main(["eval", str(run_dir)]) == 1
    assert "do not belong together" in capsys.readouterr().err
    manifest_path.write_text(original)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    empty = tmp_path / "empty.yaml"
    empty.write_text("en: []\n")
    config["eval"]["prompts"] = str(empty)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["eval", str(run_dir)]) == 1
    assert "no prompts" in capsys.readouterr().err


def test_diversity_and_buckets():
    assert diversity([[1, 2, 3, 4], [1, 2, 3, 4]]) == {"distinct_1": 0.5, "distinct_2": 0.5, "repetition_rate": 0.0}
    assert diversity([[7, 7, 7, 7, 7, 7]])["repetition_rate"] == pytest.approx(2 / 3)
    assert [repetition_bucket(n) for n in (0, 1, 2, 3, 4, 7, 8, 100)] == ["0", "1", "2-3", "2-3", "4-7", "4-7", "8-15", "64-127"]


def test_times_seen_counts_every_pass_training_made_over_the_stream():
    # A unique build (each scene once in the shards) trained over the stream several times: times
    # seen is what training read, counted as ShardBatches reads it, not 1.
    seq_len, batch, steps = 8, 4, 23
    tokens = np.arange(20 * seq_len + 3, dtype=np.int64)
    batches = ShardBatches(tokens, seq_len, batch, batch)
    read = np.zeros(batches.windows, dtype=np.int64)  # how often each window position of the stream was read
    for step in range(steps):
        x, _ = batches.batch(step)
        for row in x.numpy():
            read[row[0] // seq_len] += 1  # a later pass shifts the cut by less than a window
    window_starts = np.arange(batches.windows) * seq_len
    counted = training_reads(window_starts, len(tokens), seq_len, steps * batch)
    assert counted.tolist() == read.tolist() and set(counted.tolist()) == {4, 5}  # 92 windows, 20 per pass
    segments = {"doc": np.zeros(4, dtype=np.int64), "scene": np.arange(4), "start": np.arange(4) * 64, "end": np.arange(4) * 64 + 64}
    stream = np.arange(4 * 64, dtype=np.int64)
    assert set(sample_sequences(stream, segments, 8, 0).buckets) == {"1"}
    assert set(sample_sequences(stream, segments, 8, 0, np.full(4, 24)).buckets) == {"16-31"}


def test_prompts_sampled_together_continue_as_each_sampled_alone():
    from ltm.eval.sample import continuations
    from ltm.model import LtmConfig, LtmForCausalLM

    torch.manual_seed(0)
    model = LtmForCausalLM(LtmConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, max_position_embeddings=24)).eval()
    prompts = [[1, 5, 9], [1, 7], list(range(1, 21)), [1, 5, 9]]
    together = continuations(model, prompts, 8, temperature=1.0, top_k=20, eos_token_id=None, seed=3)
    alone = [continuations(model, [p], 8, 1.0, 20, None, seed=3, first_row=i)[0] for i, p in enumerate(prompts)]
    assert together == alone
    assert [len(row) for row in together] == [8, 8, 4, 8]  # the long prompt stops where the context ends
    assert together[0] != together[3]  # the same prompt twice: two draws
    # Greedy, the static cache decodes as generate_ids does with its growing one.
    greedy = continuations(model, prompts, 8, temperature=0.0, top_k=None, eos_token_id=None, seed=3)
    for prompt, row in zip(prompts, greedy):
        assert row == model.generate_ids(torch.tensor([prompt]), 8)[0].tolist()
    eos = greedy[0][2]  # a row ends with its first end of text
    assert continuations(model, prompts[:1], 8, 0.0, None, eos, seed=3)[0] == greedy[0][: greedy[0].index(eos) + 1]
