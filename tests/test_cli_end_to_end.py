"""One end-to-end run of the whole pipeline on a tiny config, and the CLI's help texts."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ltm.cli import main
from ltm.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["ingest", "scenes", "build", "train", "export", "eval", "report", "run"]


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
    captured = capsys.readouterr()
    run_dir = Path(captured.out.strip().splitlines()[-1])
    # stderr is not a terminal under pytest, as in `ltm run > log 2>&1`: every stage's progress ends in a whole plain line
    for done in (r"ingest 6/6 ", r"scenes 6/6 ", r"scene linking (\d+)/\1 ", r"build: encoding (\d+)/\1 ", r"build: writing ([\d,]+)/\1 ",
                 r"train 30/30 .*loss", r"eval (\d+)/\1 "):
        assert re.search(f"^{done}", captured.err, re.M), done
    for name in ["config.yaml", "documents.jsonl", "scenes.jsonl", "dataset/manifest.json", "dataset/tokenizer/tokenizer.json",
                 "train/metrics.jsonl", "train/checkpoint/model.safetensors", "eval.json", "report.html"]:
        assert (run_dir / name).exists(), name
    result = json.loads((run_dir / "eval.json").read_text())
    assert isinstance(result["heldout_bpb"], float)
    assert isinstance(result["baselines"]["unigram_bpb"], float)
    # Even 30 steps on a repetitive corpus must beat the untrained model.
    assert result["heldout_bpb"] < result["baselines"]["untrained_bpb"]
    # The probes' samples are kept, and counting them again gives eval.json's figures.
    from ltm.eval.samples import recount

    recounted = recount(run_dir / "eval.samples.jsonl")
    for name, rate in result["probes"].items():
        assert (recounted[name]["events"], recounted[name]["tokens"]) == (rate["model_events"], rate["model_tokens"]) and rate["model_tokens"] > 0
        assert rate["model_rate_ci95"][0] <= rate["model_rate"] <= rate["model_rate_ci95"][1]
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and f"{result['heldout_bpb']:.3f}" in html

    # Stages rerun alone on the same folder: eval to another file, a report over two runs.
    assert main(["eval", str(run_dir), "-o", str(run_dir / "again.json")]) == 0
    assert json.loads((run_dir / "again.json").read_text())["heldout_bpb"] == pytest.approx(result["heldout_bpb"])
    assert main(["report", str(run_dir), str(run_dir), "-o", str(run_dir / "two.html")]) == 0
    assert (run_dir / "two.html").read_text().split("</table>")[0].count("<tr><td>") == 2  # the runs table

    # The export is a plain Llama: transformers alone loads it, and it gives our logits.
    assert main(["export", str(run_dir), "-o", str(run_dir / "hf")]) == 0
    config = json.loads((run_dir / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ltm.model import LtmForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(run_dir / "hf").eval()
    ours = LtmForCausalLM.from_pretrained(run_dir / "train" / "checkpoint").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "hf")
    ids = torch.tensor([tokenizer.encode("THEON: Can a thing be measured?", add_special_tokens=False)])
    assert torch.allclose(llama(ids).logits, ours(ids).logits, atol=1e-4)
    assert (run_dir / "hf" / "generation_config.json").exists() and tokenizer.chat_template


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


@pytest.mark.parametrize("name", ["quickstart.yaml", "spiral.yaml", "scene-aware.yaml"])
def test_bundled_examples_are_valid_configs(name):
    config = load_config(ROOT / "examples" / name)
    assert all(config.resolve(p).is_dir() for p in config.ingest.paths)


def test_scene_aware_run_exports_an_ltm_model(tmp_path, tiny_config):
    import yaml

    config = yaml.safe_load(tiny_config.read_text())
    config["model"] |= {"scene_state": True, "channels": 2, "channel_aux_weight": 0.1, "loop_core_layers": 1,
                        "loop_prelude_layers": 0, "loop_max_steps": 2, "think_steps": 2, "scene_aux_weight": 0.1, "loop_aux_weight": 0.1}
    config["build"] |= {"regime": {"spiral": 2}, "budget_tokens": 3000,
                        "lenses": [{"passes": 1, "lens": "scene"}, {"passes": 1, "lens": "critic"}]}
    path = tmp_path / "aware.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--run-dir", str(run_dir)]) == 0
    metrics = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_lm", "loss_channel", "loss_scene"} <= set(metrics[-1])  # each part logged apart
    assert main(["export", str(run_dir / "train" / "checkpoint"), "-o", str(tmp_path / "hf")]) == 0
    exported = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert exported["architectures"] == ["LtmForCausalLM"] and exported["scene_state"] is True
    from transformers import AutoModelForCausalLM

    import ltm.model  # noqa: F401  (registers the LTM classes with the Auto factories)

    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "hf")).__name__ == "LtmForCausalLM"
