"""The command line as a front door: every command goes through ltm.stages, `--set` changes a config
field as the file would, and the light commands stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import EN_PARAGRAPHS

from ltm.cli import COMMANDS, _parser, main
from ltm.config import ConfigError, load_config


def test_set_changes_fields_with_yaml_values_and_a_typo_is_refused_like_one_in_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 0.003, "speed": "fast"}, "model": {"n_layers": 4}}))
    config = load_config(path, ["train.lr=1e-3", "model.n_layers=8", "build.regime={spiral: 10}", "train.steps=12"])
    assert (config.train.lr, config.model.n_layers, config.build.regime.spiral, config.train.steps) == (1e-3, 8, 10, 12)
    assert config.train.speed.mode == "fast"  # untouched fields keep the file's values
    with pytest.raises(ConfigError, match=r"--set train\.lrr=1.*train\.lrr: Extra inputs are not permitted"):
        load_config(path, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="model.n_heads.*less than or equal|d_model=256 is not divisible by n_heads=7"):
        load_config(path, ["model.n_heads=7"])
    with pytest.raises(ConfigError, match="sets speed to 'fast', not a mapping"):
        load_config(path, ["train.speed.fp8_head=false"])
    assert load_config(path, ["train.speed={mode: fast, fp8_head: false}"]).train.speed.fp8_head is False
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(path, ["train.lr"])


def test_every_command_is_listed_once_and_reaches_a_stage(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    shown = capsys.readouterr().out
    assert "SUPPRESS" not in shown
    assert all(command.name in shown for command in COMMANDS if command.help)
    assert main(["scenes", "schema"]) == 0 and '"ltm.scene"' in capsys.readouterr().out


def test_ingest_and_scenes_load_neither_torch_nor_transformers(tmp_path):
    # Ingest loads not even scipy (its near-duplicate search is numpy alone); scenes loads scipy and
    # scikit-learn for linking, never torch.
    (tmp_path / "a.md").write_text("\n\n".join(EN_PARAGRAPHS * 4), encoding="utf-8")
    heavy = "('torch', 'transformers', 'scipy', 'sklearn', 'datasketch')"
    script = (f"import sys; from ltm.cli import main; "
              f"assert main(['ingest', {str(tmp_path / 'a.md')!r}, '-o', {str(tmp_path / 'd.jsonl')!r}]) == 0; "
              f"print('ingest', sorted(m for m in {heavy} if m in sys.modules)); "
              f"assert main(['scenes', {str(tmp_path / 'd.jsonl')!r}, '-o', {str(tmp_path / 's.jsonl')!r}]) == 0; "
              f"print('scenes', sorted(m for m in {heavy} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("ingest [", "scenes ["))]
    assert lines[0] == "ingest []"
    assert "torch" not in lines[1] and "transformers" not in lines[1]


def test_off_a_terminal_the_hugging_face_progress_bars_are_off():
    script = "import os, ltm.cli, transformers.utils.logging as l; print(os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'), l.is_progress_bar_enabled())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)  # stderr a pipe, as in `ltm run > log 2>&1`
    assert done.stdout.split() == ["1", "False"], done.stderr


def test_run_refuses_a_missing_ingest_folder_before_making_its_run_folder(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"ingest": {"paths": ["no-such-books"]}, "build": {"lenses": [{"passes": 1, "lens": "critc"}]}}))
    assert main(["run", str(config), "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "ingest.paths:" in err and "no-such-books does not exist" in err and "'critc'" in err
    assert not (tmp_path / "run").exists()


def test_a_run_reads_every_input_path_from_the_config_files_folder(tmp_path):
    """Paths in a config are relative to its file, wherever `ltm run` starts: what preflight checks
    is what the stages read (build.tokenizer among them)."""
    from ltm.stages import absolute

    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "c.yaml").write_text(yaml.safe_dump({"ingest": {"paths": ["corpus"]}, "build": {"tokenizer": "../tok"},
                                                   "eval": {"wikitext": "wiki.txt"}}))
    config = absolute(load_config(folder / "c.yaml"))
    assert config.ingest.paths == [str(folder / "corpus")]
    assert config.build.tokenizer == str(tmp_path / "tok") and config.eval.wikitext == str(folder / "wiki.txt")
