"""The HTML report: what each run was, its phase changes on the loss curve, and an overfitting flag."""

from __future__ import annotations

import json

import yaml
from conftest import TINY_CONFIG, write_corpus

from ltm import stages
from ltm.config import RunConfig, dump_config
from ltm.report import write_report
from ltm.report.diagnosis import overfitting


def curve(steps: int, train_end: float, heldout_end: float) -> list[dict]:
    """Training loss falling linearly from 4.0 to `train_end`, held-out measured every 10 steps going
    from 4.2 to `heldout_end`."""
    out = []
    for step in range(1, steps + 1):
        record = {"step": step, "loss": 4.0 + (train_end - 4.0) * step / steps, "tokens": step * 256}
        if step % 10 == 0:
            record["heldout_loss"] = 4.2 + (heldout_end - 4.2) * step / steps
        out.append(record)
    return out


def test_overfitting_is_flagged_when_held_out_loss_is_flat_or_rises_while_training_loss_falls():
    assert "rose (" in overfitting(curve(100, 1.0, 4.6))
    assert "stayed flat" in overfitting(curve(100, 1.0, 4.19))
    assert overfitting(curve(100, 1.0, 3.0)) is None  # both fall: learning
    assert overfitting(curve(100, 3.99, 4.6)) is None  # training loss flat too: nothing learned, not overfitting
    assert overfitting(curve(20, 1.0, 4.6)) is None  # two measurements say nothing


def test_the_report_shows_the_config_regime_phase_changes_and_the_overfitting_flag(tmp_path):
    # A real build with a tag curriculum (myth, then logic); training curves written by hand.
    config = RunConfig.model_validate(dict(TINY_CONFIG, ingest={"paths": [str(write_corpus(tmp_path / "corpus"))]},
                                           build={"vocab_size": 400, "heldout_docs": 0.3, "curriculum": {"by": "tag", "phases": ["myth", "logic"]}},
                                           train=dict(TINY_CONFIG["train"], steps=100, batch_size=2)))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    stages.ingest(config.ingest.paths, run / "documents.jsonl")
    stages.scenes(run / "documents.jsonl", run / "scenes.jsonl", config)
    stages.build(config, run / "scenes.jsonl", run / "dataset")
    (run / "train").mkdir()
    (run / "train" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in curve(100, 1.0, 4.6)), encoding="utf-8")
    (run / "eval.json").write_text(json.dumps({"heldout_bpb": 3.1, "baselines": {"unigram_bpb": 4.0, "untrained_bpb": 8.0}}))
    page = write_report([run], tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Questions about the fact set" not in page and "Cloze on real text" not in page  # no table without figures
    score = {"n": 20, "mc": 0.45, "mc_ci95": [0.26, 0.66], "em": 0.1, "by_attribute": {}, "by_language": {}}
    (run / "eval.json").write_text(json.dumps({
        "heldout_bpb": 3.1, "baselines": {"unigram_bpb": 4.0, "untrained_bpb": 8.0},
        "heldout_by": {"language": {"ru": {"bpb": 2.5, "bytes": 900}}},
        "memorization": {"gap_by_times_seen": {"8-15": {"n": 4, "train_nll": 0.5, "heldout_nll": 3.25, "gap": 2.75}}},
        "qa": {"forms": {"statement": {"train": score}}},
        "cloze": {"by_split": {"heldout": {"n": 30, "accuracy": 0.3, "accuracy_ci95": [0.17, 0.48], "mrr": 0.5, "chance": 0.2}}},
        "probes": {"tension": {"model_rate": 4.0, "data_rate": 3.0, "model_events": 2, "model_tokens": 500,
                               "model_rate_ci95": [0.48, 14.45], "model_hits_in_frames": 1}}}))
    understanding = write_report([run], tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<td>statement</td><td>train</td><td>20</td><td>45.0% [26%, 66%]</td><td>10.0%</td>" in understanding
    assert "<td>heldout</td><td>30</td><td>30.0% [17%, 48%]</td><td>20%</td>" in understanding
    assert "<td>ru</td><td>2.500</td>" in understanding and "<td>8-15</td><td>4</td><td>0.500</td><td>3.250</td><td>2.750</td>" in understanding
    assert "4.00 [0.48, 14.45], 2 events" in understanding
    assert "<td>unique</td><td>tag:phase</td><td>myth → logic</td>" in page
    assert "100 x 2, lr 0.005" in page and "config.yaml</summary>" in page and "curriculum:" in page
    manifest = json.loads((run / "dataset" / "manifest.json").read_text())
    passes = 100 * 2 * 32 / (manifest["stats"]["train"]["tokens"] // 32 * 32 - 32)
    assert f"<td>{passes:.1f}</td>" in page
    assert "Overfitting: from step 50 to step 100 held-out loss rose" in page
    assert "myth from step 0, logic from step " in page
    assert yaml.safe_load((run / "config.yaml").read_text())["build"]["curriculum"]["by"] == "tag"
