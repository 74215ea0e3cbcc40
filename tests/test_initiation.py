"""The initiation stage on CPU: LoRA on the frozen base merged into the weights, the full-parameter
and the no-op comparisons, the tokenizer check, `ltm tune` on tiny Hugging Face models made here,
and `ltm run` with an initiation stage."""

import filecmp
import json
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, write_corpus
from safetensors import safe_open

from ltm import stages
from ltm.dataset.reader import load_manifest, load_split
from ltm.cli import main
from ltm.config import RunConfig
from ltm.model import LtmForCausalLM
from ltm.model.export import export
from ltm.train import TrainError, train
from ltm.train import initiation as initiation_module
from ltm.train.data import loss_windows
from ltm.train.initiation import initiate, tune_hf
from ltm.train.loop import heldout_loss

TURNS = [
    "USER: Why do you keep returning to the same question?",
    "ASSISTANT: Because each time I return, I see it under a new lens: first plainly, then as a scene.",
    "USER: And what changes when it becomes a scene?",
    "ASSISTANT: Roles appear, a doubter and a guide. The tension rises, and the question finds a direction.",
]
INITIATION = {"steps": 20, "lr": 1e-2, "batch_size": 8, "lora_r": 4, "lora_alpha": 8}


def write_dialogues(folder: Path, count: int = 4) -> Path:
    """Chat-style Markdown files: the initiation's dialogue data, unlike the pretraining corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        turns = [f"{turn} ({i}.{j})" for _ in range(3) for j, turn in enumerate(TURNS)]
        (folder / f"chat_{i}.md").write_text("\n\n".join(turns) + "\n", encoding="utf-8")
    return folder


def with_initiation(config: RunConfig, **changes) -> RunConfig:
    return config.model_copy(update={"initiation": config.initiation.model_copy(update=INITIATION | changes)})


def build_dialogue_dataset(config: RunConfig, root: Path, out: Path, tokenizer: Path | None) -> Path:
    stages.ingest([write_dialogues(root / "dialogues")], root / "dialogue-docs.jsonl")
    stages.scenes(root / "dialogue-docs.jsonl", root / "dialogue-scenes.jsonl", config)
    built = config.model_copy(update={"build": config.build.model_copy(update={"tokenizer": tokenizer and str(tokenizer)})})
    return stages.build(built, root / "dialogue-scenes.jsonl", out)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A pretrained tiny model and a dialogue dataset built with its tokenizer; the tests only read them."""
    root = tmp_path_factory.mktemp("initiation")
    config = RunConfig.model_validate(dict(TINY_CONFIG, ingest={"paths": [str(write_corpus(root / "corpus"))]}))
    stages.ingest(config.ingest.paths, root / "docs.jsonl")
    stages.scenes(root / "docs.jsonl", root / "scenes.jsonl", config)
    stages.build(config, root / "scenes.jsonl", root / "ds")
    checkpoint = train(config, root / "ds", root / "train")
    dataset = build_dialogue_dataset(config, root, root / "ds-dialogue", root / "ds" / "tokenizer")
    return SimpleNamespace(config=config, checkpoint=checkpoint, dataset=dataset, tokenizer=root / "ds" / "tokenizer")


def dialogue_loss(checkpoint: Path, dataset: Path) -> float:
    model = LtmForCausalLM.from_pretrained(str(checkpoint))
    windows = loss_windows(load_split(dataset, load_manifest(dataset), "heldout"), model.config.max_position_embeddings)
    return heldout_loss(model, windows, torch.device("cpu"), nullcontext)


def weight_names(folder: Path) -> list[str]:
    with safe_open(folder / "model.safetensors", "pt") as weights:
        return list(weights.keys())


def test_lora_trains_adapters_on_the_frozen_base_then_merges_them(pretrained, tmp_path, monkeypatch):
    base = LtmForCausalLM.from_pretrained(str(pretrained.checkpoint)).state_dict()
    seen = {}
    real_fit = initiation_module.fit

    def spying_fit(run, *args, **kwargs):
        real_fit(run, *args, **kwargs)
        params = dict(run.model.named_parameters())  # after training, before the merge
        seen["trained"] = {name for name, p in params.items() if p.requires_grad}
        seen["base_unchanged"] = all(torch.equal(p.detach().cpu(), base[name.removeprefix("inner.base_model.model.").replace(".base_layer", "")])
                                     for name, p in params.items() if "lora_" not in name)

    monkeypatch.setattr(initiation_module, "fit", spying_fit)
    config = with_initiation(pretrained.config, mode="lora")
    out = initiate(config, pretrained.checkpoint, pretrained.dataset, tmp_path / "lora")
    # Step 0 is the held-out loss before LoRA, the figure the stage is compared with; the last record's is lower.
    records = [json.loads(line) for line in (tmp_path / "lora" / "metrics.jsonl").read_text().splitlines()]
    assert records[0] == {"step": 0, "tokens": 0, "heldout_loss": records[0]["heldout_loss"]} and records[0]["heldout_loss"] > 0
    assert records[-1]["step"] == config.initiation.steps and records[-1]["heldout_loss"] < records[0]["heldout_loss"]
    # No intermediate checkpoint: only the final, resumable one (docs/training.md).
    assert [p.name for p in (tmp_path / "lora" / "checkpoints").iterdir()] == [f"step_{config.initiation.steps:07d}"]

    assert seen["trained"] and all("lora_" in name for name in seen["trained"]) and seen["base_unchanged"]
    assert not [name for name in weight_names(out) if "lora" in name or "base_layer" in name]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LtmForCausalLM"]
    merged = LtmForCausalLM.from_pretrained(str(out)).state_dict()
    # Only the targeted projections moved: embeddings and norms are the pretrained ones.
    assert all(torch.equal(merged[n], base[n]) for n in base if "proj" not in n)
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    ids = torch.arange(20).unsqueeze(0)
    before = LtmForCausalLM.from_pretrained(str(pretrained.checkpoint)).eval()(ids).logits
    assert not torch.allclose(LtmForCausalLM.from_pretrained(str(out)).eval()(ids).logits, before, atol=1e-4)
    assert dialogue_loss(out, pretrained.dataset) < dialogue_loss(pretrained.checkpoint, pretrained.dataset) - 0.1

    # The adapter kept beside it merges into the same weights; the merged model exports as a plain Llama.
    from peft import PeftModel

    again = PeftModel.from_pretrained(LtmForCausalLM.from_pretrained(str(pretrained.checkpoint)), str(tmp_path / "lora" / "adapter"))
    assert all(torch.allclose(v, merged[k], atol=1e-6) for k, v in again.merge_and_unload().state_dict().items())
    assert export(out, tmp_path / "hf") == "LlamaForCausalLM"


def test_full_changes_every_parameter(pretrained, tmp_path):
    out = initiate(with_initiation(pretrained.config, mode="full"), pretrained.checkpoint, pretrained.dataset, tmp_path / "full")
    base = LtmForCausalLM.from_pretrained(str(pretrained.checkpoint)).state_dict()
    tuned = LtmForCausalLM.from_pretrained(str(out)).state_dict()
    assert tuned.keys() == base.keys() and not [n for n in base if torch.equal(tuned[n], base[n])]
    assert dialogue_loss(out, pretrained.dataset) < dialogue_loss(pretrained.checkpoint, pretrained.dataset)
    assert not (tmp_path / "full" / "adapter").exists()


def test_none_keeps_the_pretrained_checkpoint(pretrained, tmp_path):
    out = initiate(with_initiation(pretrained.config, mode="none"), pretrained.checkpoint, pretrained.dataset, tmp_path / "none")
    files = sorted(p.name for p in pretrained.checkpoint.iterdir())
    assert sorted(p.name for p in out.iterdir()) == files
    assert filecmp.cmpfiles(pretrained.checkpoint, out, files, shallow=False)[0] == files


def test_a_dataset_built_with_another_tokenizer_is_refused(pretrained, tmp_path):
    other = build_dialogue_dataset(pretrained.config, tmp_path, tmp_path / "own-tokenizer", tokenizer=None)
    with pytest.raises(TrainError, match="another tokenizer"):
        initiate(with_initiation(pretrained.config, mode="lora"), pretrained.checkpoint, other, tmp_path / "refused")


# --- a Hugging Face model the user already has ----------------------------------------------------------


def tiny_hf_model(kind: str, tokenizer_dir: Path, folder: Path) -> Path:
    """A tiny randomly initialised transformers model saved with a tokenizer, as a downloaded one would be."""
    from transformers import (AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 64}
    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**sizes, **ids))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**sizes, **ids)).to(torch.bfloat16)  # saved in bf16, as Qwen ships
    else:
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, **ids))
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def text_loss(folder: Path, texts: list[str]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(str(folder))("\n".join(texts))["input_ids"][:64]])
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


TEXTS = [f"{turn} ({i})" for i in range(10) for turn in TURNS]


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_tune_hf_lora_merges_into_a_folder_transformers_loads(pretrained, tmp_path, kind):
    from transformers import AutoConfig, AutoModelForCausalLM

    original = tiny_hf_model(kind, pretrained.tokenizer, tmp_path / kind)
    config = with_initiation(pretrained.config, mode="lora", steps=60, lr=2e-2, lora_alpha=32)
    out = tune_hf(original, TEXTS, config, tmp_path / "tuned")

    before, after = AutoConfig.from_pretrained(str(original)), AutoConfig.from_pretrained(str(out))
    assert after.architectures == before.architectures and after.model_type == before.model_type and after.dtype == before.dtype
    assert not (out / "adapter_config.json").exists() and (tmp_path / "tuned" / "adapter" / "adapter_config.json").exists()
    assert not [name for name in weight_names(out) if "lora" in name or "base_layer" in name]
    ids = torch.arange(1, 20).unsqueeze(0)
    with torch.no_grad():
        logits = [AutoModelForCausalLM.from_pretrained(str(f), dtype=torch.float32).eval()(input_ids=ids).logits for f in (original, out)]
    assert not torch.allclose(*logits, atol=1e-3)
    # A random base that LoRA may only nudge: the loss falls little, but it falls.
    assert text_loss(out, TEXTS) < text_loss(original, TEXTS) - 0.05


def test_tune_cli_reads_jsonl_and_text_files_and_refuses_mode_none(pretrained, tmp_path):
    original = tiny_hf_model("llama", pretrained.tokenizer, tmp_path / "llama")
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:30]), encoding="utf-8")
    (tmp_path / "more.txt").write_text("\n".join(TEXTS[30:]), encoding="utf-8")
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump({"model": {"max_seq_len": 32}, "initiation": INITIATION | {"mode": "full", "steps": 10}}))
    args = ["tune", str(original), "--texts", str(tmp_path / "docs.jsonl"), str(tmp_path / "more.txt"), "-o", str(tmp_path / "out")]
    assert main([*args, "-c", str(config)]) == 0
    assert (tmp_path / "out" / "checkpoint" / "model.safetensors").exists() and not (tmp_path / "out" / "adapter").exists()
    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    # Step 0 is the held-out loss the stage starts from, then one record per step.
    assert [m["step"] for m in metrics] == list(range(11)) and "heldout_loss" in metrics[0] and "heldout_loss" in metrics[-1]
    assert metrics[-1]["heldout_loss"] < metrics[0]["heldout_loss"]
    config.write_text(yaml.safe_dump({"initiation": {"mode": "none"}}))
    assert main([*args, "-c", str(config)]) == 1


# --- the pipeline -------------------------------------------------------------------------------------


def test_run_with_lora_initiation_evaluates_the_initiated_model(tmp_path, tiny_config, monkeypatch, capsys):
    config = yaml.safe_load(tiny_config.read_text())
    config["initiation"] = INITIATION | {"mode": "lora", "paths": [str(write_dialogues(tmp_path / "dialogues"))]}
    tiny_config.write_text(yaml.safe_dump(config))
    evaluated = []
    from ltm.eval import evaluate as evaluation  # stages imports it when the eval stage runs

    real_evaluate = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda config, dataset, checkpoint, *rest, **options: evaluated.append(checkpoint)
                        or real_evaluate(config, dataset, checkpoint, *rest, **options))

    assert main(["run", str(tiny_config)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert (run_dir / "initiation" / "checkpoint" / "model.safetensors").exists()
    assert evaluated == [run_dir / "initiation" / "checkpoint"] and (run_dir / "eval.json").exists()
    assert load_manifest(run_dir / "dataset-initiation").tokenizer_sha256 == load_manifest(run_dir / "dataset").tokenizer_sha256
    assert stages.final_checkpoint(run_dir) == run_dir / "initiation" / "checkpoint"

    config["initiation"]["paths"] = []
    tiny_config.write_text(yaml.safe_dump(config))
    assert main(["run", str(tiny_config)]) == 1  # lora with nothing to initiate on is refused, not skipped

    # The same folder run again without initiation evaluates the pretrained model, not the old initiated one.
    config["initiation"] = {"mode": "none"}
    tiny_config.write_text(yaml.safe_dump(config))
    evaluated.clear()
    assert main(["run", str(tiny_config), "--run-dir", str(run_dir)]) == 0
    assert evaluated == [run_dir / "train" / "checkpoint"] and stages.final_checkpoint(run_dir) == run_dir / "train" / "checkpoint"


def test_help_explains_the_new_commands():
    for command in ("initiate", "tune"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
