"""One end-to-end run of the whole pipeline on a tiny config, and the CLI's help texts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ltm.cli import main
from ltm.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["ingest", "scenes", "build", "train", "eval", "report", "run"]


def test_help_explains_every_command():
    out = subprocess.run([sys.executable, "-m", "ltm.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in COMMANDS:
        assert command in out
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0


def test_run_writes_the_contracted_run_folder(tiny_config, capsys):
    assert main(["run", str(tiny_config)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ["config.yaml", "documents.jsonl", "scenes.jsonl", "dataset/manifest.json", "dataset/tokenizer/tokenizer.json",
                 "train/metrics.jsonl", "train/checkpoint/model.safetensors", "eval.json", "report.html"]:
        assert (run_dir / name).exists(), name
    result = json.loads((run_dir / "eval.json").read_text())
    assert isinstance(result["heldout_bpb"], float)
    assert isinstance(result["baselines"]["unigram_bpb"], float)
    # Even 30 steps on a repetitive corpus must beat the untrained model.
    assert result["heldout_bpb"] < result["baselines"]["untrained_bpb"]
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and f"{result['heldout_bpb']:.3f}" in html

    # Stages rerun alone on the same folder: eval to another file, a report over two runs.
    assert main(["eval", str(run_dir), "-o", str(run_dir / "again.json")]) == 0
    assert json.loads((run_dir / "again.json").read_text())["heldout_bpb"] == pytest.approx(result["heldout_bpb"])
    assert main(["report", str(run_dir), str(run_dir), "-o", str(run_dir / "two.html")]) == 0
    assert (run_dir / "two.html").read_text().count("<tr><td>") == 2


def test_stage_commands_chain_by_hand(tmp_path, tiny_config):
    docs, scenes, ds, tr = (tmp_path / n for n in ("d.jsonl", "s.jsonl", "ds", "tr"))
    config = load_config(tiny_config)
    assert main(["ingest", *config.ingest.paths, "-o", str(docs)]) == 0
    assert main(["scenes", str(docs), "-o", str(scenes), "-c", str(tiny_config)]) == 0
    assert main(["build", str(tiny_config), "--scenes", str(scenes), "-o", str(ds)]) == 0
    assert main(["train", str(tiny_config), "--data", str(ds), "-o", str(tr)]) == 0
    assert (tr / "checkpoint" / "config.json").exists()


def test_bad_config_is_refused_with_the_field_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: 30, n_heads: 4}\ntrain: {stepz: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "bad.yaml" in str(err.value) and "stepz" in str(err.value) and "divisible" in str(err.value)
    assert main(["run", str(bad)]) == 1


@pytest.mark.parametrize("name", ["quickstart.yaml", "spiral.yaml"])
def test_bundled_examples_are_valid_configs(name):
    config = load_config(ROOT / "examples" / name)
    assert all(config.resolve(p).is_dir() for p in config.ingest.paths)
