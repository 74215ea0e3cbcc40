"""The scene-aware parts' instruments: a self-looped model evaluated at chosen numbers of loop steps
(ltm.eval.think) and the channel gates read out per lens (ltm.eval.gates)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from ltm.cli import main
from ltm.config import load_config
from ltm.dataset.reader import load_manifest, load_segments, open_split
from ltm.eval.evaluate import EvalError
from ltm.eval.gates import gate_readout
from ltm.eval.think import think_curve, thinking
from ltm.model.factory import load_model

LENSES = [{"passes": 1, "lens": lens} for lens in ("plain", "scene", "questions", "critic", "child")]


@pytest.fixture(scope="module")
def all_on_run(tmp_path_factory):
    """A tiny run of a model with every part on, trained on a fact set read under five lenses."""
    from conftest import write_corpus

    tmp = tmp_path_factory.mktemp("parts")
    config = {
        "name": "parts", "seed": 3, "out_dir": str(tmp / "runs"),
        "ingest": {"paths": [str(write_corpus(tmp / "corpus", copies=2))]},
        "facts": {"people": 6, "languages": ["en"], "heldout_share": 0.34, "qa_train_share": 0.5},
        "scenes": {"min_tokens": 10, "max_tokens": 80, "link_k": 0},
        "build": {"vocab_size": 400, "heldout_docs": 0.3, "regime": {"spiral": 5}, "lenses": LENSES},
        "model": {"d_model": 32, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 64, "scene_state": True,
                  "channels": 4, "channel_aux_weight": 0.1, "loop_prelude_layers": 1, "loop_core_layers": 2,
                  "loop_max_steps": 3, "think_steps": 2},
        "train": {"steps": 12, "batch_size": 4, "lr": 5e-3, "warmup_steps": 2, "eval_every": 12, "logger": "none"},
        "eval": {"memorization_per_bucket": 2, "samples_per_prompt": 1, "sample_tokens": 4, "data_sample_tokens": 1000,
                 "qa": {"forms": ["question"]}, "cloze": {"items": 8}},
    }
    path = tmp / "parts.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp / "run"
    assert main(["run", str(path), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_the_curve_at_the_trained_depth_is_what_ltm_eval_measured_and_other_depths_differ(all_on_run):
    config = load_config(all_on_run / "config.yaml")
    points = think_curve(config, all_on_run / "dataset", all_on_run / "train" / "checkpoint", all_on_run / "qa.jsonl", [1, 2, 3])
    assert [p.steps for p in points] == [1, 2, 3]
    measured = json.loads((all_on_run / "eval.json").read_text())
    at_two = points[1]
    assert at_two.heldout_bpb == pytest.approx(measured["heldout_bpb"], rel=1e-6)
    assert at_two.qa.items["question"].mc == measured["qa"]["items"]["question"]["mc"]
    assert at_two.cloze.by_split.keys() == {k for k in measured["cloze"]["by_split"]}
    assert points[0].heldout_bpb != at_two.heldout_bpb != points[2].heldout_bpb
    assert set(at_two.heldout_by) == {"document", "language"} and "en" in at_two.heldout_by["language"]


def test_thinking_sets_the_depth_for_the_block_only_and_refuses_a_model_without_a_loop(all_on_run):
    model = load_model(all_on_run / "train" / "checkpoint").eval()
    ids = torch.randint(0, 100, (1, 16))
    with thinking(model, 5):
        assert model.model.loop_steps(None) == 5
        deep = model(ids).logits
    assert model.config.think_steps == 2 and not torch.equal(deep, model(ids).logits)
    plain = load_model(all_on_run / "train" / "checkpoint")
    plain.config.loop_core_layers = 0
    with pytest.raises(EvalError, match="no self-loop"), thinking(plain, 3):
        pass


def test_gate_readout_gives_each_lens_a_distribution_over_the_channels(all_on_run):
    dataset = all_on_run / "dataset"
    manifest = load_manifest(dataset)
    model = load_model(all_on_run / "train" / "checkpoint").eval()
    readout = gate_readout(model, open_split(dataset, manifest, "train"), load_segments(dataset, "train"), windows_per_lens=4)
    assert readout.channels == ["logician", "poet", "archetype", "ironist"]
    assert {"plain", "scene", "critic"} <= set(readout.lenses) and all(readout.tokens[lens] > 0 for lens in readout.lenses)
    for row in [*readout.mean.values(), *(r for layer in readout.by_layer.values() for r in layer.values())]:
        assert len(row) == 4 and sum(row) == pytest.approx(1.0, abs=1e-3)
    assert set(readout.by_layer) == {"0", "1", "2", "3"}
    assert readout.mapped["critic"] == "logician" and readout.mapped["scene"] == "archetype" and "plain" not in readout.mapped
    # The mean over layers is the mean of the layers' tables.
    assert readout.mean["scene"][0] == pytest.approx(np.mean([layer["scene"][0] for layer in readout.by_layer.values()]), abs=1e-3)
    model.config.channels = 0
    for layer in model.model.layers:
        layer.mlp = torch.nn.Identity()
    with pytest.raises(ValueError, match="no channels"):
        gate_readout(model, open_split(dataset, manifest, "train"), load_segments(dataset, "train"))
