"""What only a GPU can check: CUDA-graph replays (train.compile_mode: reduce-overhead, what `auto`
picks on one GPU) follow the plain compiled run, with gradient accumulation, with every
scene-aware extra, and for LoRA on ltm's model and on transformers models; the FP8 head's kernels
on real FP8 tensor cores; and, with two GPUs, DDP and FSDP2 under torchrun against one GPU.
Skipped without CUDA (CI has none); run on the device machine (docs/training.md says how)."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltm.config import TrainConfig
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.fp8_head import fp8_head_loss
from ltm.model.fp8_linear import fp8_supported
from ltm.train import distributed
from ltm.train.data import ShardBatches, loss_windows
from ltm.train.loop import fit, prepare

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _tiny() -> LtmForCausalLM:
    torch.manual_seed(0)
    return LtmForCausalLM(LtmConfig(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=4, max_position_embeddings=64))


def _curve(mode: str, model: torch.nn.Module | None = None) -> list[float]:
    """The losses of 12 steps of `model` (default: _tiny()) with accumulation 4, compiled in `mode`."""
    tokens = ((np.arange(200_000) * 7) % 509).astype(np.uint16)  # each token follows from the last: learnable
    batches = ShardBatches(tokens, 64, 16, 4, 0, 1)  # accumulation 4
    tc = TrainConfig(steps=12, batch_size=16, micro_batch_size=4, lr=1e-2, warmup_steps=2, eval_every=10**9,
                     logger="none", speed={"mode": "exact", "compile": True, "compile_mode": mode})
    world = distributed.setup("cuda")
    with tempfile.TemporaryDirectory() as out:
        fit(prepare(model or _tiny(), None, tc, batches, loss_windows(tokens[:65], 64), Path(out), world))
        return [json.loads(line)["loss"] for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_cuda_graphs_with_accumulation_follow_the_plain_compiled_curve():
    plain, graphs = _curve("default"), _curve("reduce-overhead")
    assert len(graphs) == 12 and graphs[-1] < graphs[0] - 0.5
    assert np.allclose(plain, graphs, atol=2e-3), (plain, graphs)


def _extras_curve(mode: str | None, extras: dict) -> list[dict]:
    from test_model import IDS, VOCAB, scene_batch

    stream = scene_batch(64).flatten().numpy().astype(np.uint16)  # scenes with their markers, one after another
    torch.manual_seed(0)
    model = LtmForCausalLM(LtmConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                     num_key_value_heads=2, max_position_embeddings=32, scene_token_ids=IDS, **extras))
    tc = TrainConfig(steps=10, batch_size=8, micro_batch_size=4, lr=3e-3, warmup_steps=2, eval_every=10**9,
                     logger="none", speed={"mode": "exact", "compile": True, "compile_mode": mode})
    with tempfile.TemporaryDirectory() as out:
        fit(prepare(model, None, tc, ShardBatches(stream, 32, 8, 4, 0, 1), loss_windows(stream[:33], 32), Path(out),
                    distributed.setup("cuda")))
        return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_scene_aware_extras_replay_as_cuda_graphs():
    extras = {"scene_state": True, "channels": 4, "channel_aux_weight": 0.1, "scene_aux_weight": 0.1}
    curves = {mode: _extras_curve(mode, extras) for mode in ("default", "reduce-overhead")}
    for key in ("loss", "loss_lm", "loss_channel", "loss_scene"):
        plain, graphs = ([m[key] for m in curves[mode]] for mode in curves)
        assert np.allclose(plain, graphs, atol=2e-3), (key, plain, graphs)


def test_a_compiled_self_looped_model_logs_every_loss_part():
    from test_model import SWITCHES

    curve = _extras_curve(None, SWITCHES["all"])  # unset: no CUDA graphs for a looped model
    assert all({"loss_lm", "loss_channel", "loss_scene"} <= set(m) and np.isfinite(m["loss"]) for m in curve)


def _lora(dropout: float):
    from ltm.config import InitiationConfig
    from ltm.train.adapters import Trainable, with_lora

    return Trainable(with_lora(_tiny(), InitiationConfig(mode="lora", lora_dropout=dropout)), "LoRA")


def test_the_lora_initiation_replays_as_cuda_graphs_on_the_plain_compiled_curve():
    plain, graphs = _curve("default", _lora(0.0)), _curve("reduce-overhead", _lora(0.0))
    assert graphs[-1] < graphs[0] - 0.1
    assert np.allclose(plain, graphs, atol=2e-3), (plain, graphs)


def _transformers_model(kind: str) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    sizes = {"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 64}
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**sizes))
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**sizes))
    return GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=128, n_layer=2, n_head=4, n_positions=64))


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_lora_tuning_of_a_transformers_model_replays_as_cuda_graphs_on_the_plain_compiled_curve(kind):
    """What `ltm tune` trains (auto picks CUDA graphs for it): peft's LoRA, with dropout, inside a
    transformers model of the kinds tests/test_initiation.py tunes on the CPU."""
    from ltm.config import InitiationConfig
    from ltm.train.adapters import Trainable, with_lora

    def model():
        return Trainable(with_lora(_transformers_model(kind), InitiationConfig(mode="lora", lora_dropout=0.1)), "LoRA")

    plain, graphs = _curve("default", model()), _curve("reduce-overhead", model())
    assert np.allclose(plain, graphs, atol=2e-3), (plain, graphs)
    assert graphs[-1] < graphs[0] - 0.05, graphs  # it learns (GPT-2's LoRA adapts c_attn alone, so slowly)


def test_lora_dropout_draws_new_masks_at_every_graph_replay():
    """A replayed graph must not replay its random numbers: each step's dropout needs new masks."""
    x = torch.randint(0, 512, (4, 64), device="cuda")
    losses = {}
    for dropout in (0.0, 0.3):
        model = _lora(dropout).cuda().train()
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # LoRA starts with B = 0, where dropout changes nothing
                parameter.data.normal_(0, 0.5)
        model.base.model.prepare(x.device)
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
        seen = []
        for _ in range(4):
            torch.compiler.cudagraph_mark_step_begin()
            with torch.no_grad():
                seen.append(compiled(x, x, return_logits=False).loss.item())
        losses[dropout] = seen
    assert len(set(losses[0.0])) == 1  # the same input, no dropout: the same loss at every replay
    assert len(set(losses[0.3])) == 4, losses[0.3]


@pytest.mark.skipif(not torch.cuda.is_available() or not fp8_supported(torch.device("cuda")), reason="needs FP8 tensor cores")
@pytest.mark.parametrize("upstream", [1.0, -2.0])
def test_fp8_head_on_the_gpu_follows_the_exact_loss_and_gradients(upstream):
    torch.manual_seed(0)
    hidden = torch.randn(1000, 256, device="cuda", dtype=torch.bfloat16)  # 1000 tokens: padded to 1008
    weight = 0.05 * torch.randn(2048, 256, device="cuda")
    labels = torch.randint(0, 2048, (1000,), device="cuda")
    results = []
    for fn in (lambda h, w: fp8_head_loss(h, w, labels), lambda h, w: F.cross_entropy((h.float() @ w.t()), labels)):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        loss = fn(h, w)
        (upstream * loss).backward()
        results.append((loss.item(), h.grad.float(), w.grad.float()))
    (loss8, gh8, gw8), (loss, gh, gw) = results
    assert loss8 == pytest.approx(loss, rel=0.01)
    for fast, exact in ((gh8, gh), (gw8, gw)):
        assert F.cosine_similarity(fast.flatten(), exact.flatten(), dim=0).item() > 0.98


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gpus_under_torchrun_follow_the_one_gpu_curve(tiny_config, tmp_path, strategy):
    """NCCL, not Gloo: each rank's micro-batches, the averaged gradients and the held-out losses on two
    GPUs give the loss curve of one GPU at the same global batch (tests/test_train.py checks the same on CPU)."""
    import os
    import subprocess
    import sys

    import yaml

    from ltm import stages
    from ltm.config import load_config
    from ltm.train import train

    config = load_config(tiny_config)
    stages.ingest(config.ingest.paths, tmp_path / "docs.jsonl")
    stages.scenes(tmp_path / "docs.jsonl", tmp_path / "scenes.jsonl", config)
    stages.build(config, tmp_path / "scenes.jsonl", tmp_path / "ds")
    config.train = config.train.model_copy(update={"distributed": strategy, "speed": {"compile_mode": "default"}, "logger": "none"})
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    train(config, tmp_path / "ds", tmp_path / "one")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ltm.cli",
                             "train", str(path), "--data", str(tmp_path / "ds"), "-o", str(tmp_path / "two")],
                            capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"})
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = ([json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("one", "two"))
    assert len(one) == len(two) == config.train.steps and one[-1]["loss"] < one[0]["loss"] - 1
    for key in ("loss", "heldout_loss"):
        a, b = ([r[key] for r in run if key in r] for run in (one, two))
        assert len(a) == len(b) > 0 and np.allclose(a, b, atol=5e-3), (key, a, b)


@pytest.mark.skipif(not torch.cuda.is_available() or not fp8_supported(torch.device("cuda")), reason="needs FP8 tensor cores")
@pytest.mark.parametrize("fp8_weight_grad", [False, True])
def test_fp8_body_products_on_the_gpu_follow_the_exact_ones(fp8_weight_grad):
    from ltm.model.fp8_linear import FP8Linear

    torch.manual_seed(0)
    x = torch.randn(4001, 768, device="cuda")  # padded to 4016 for the kernels, and cut back
    weight = 0.02 * torch.randn(2048, 768, device="cuda")
    upstream = torch.randn(4001, 2048, device="cuda") / 4001  # a mean loss's per-token gradients
    results = []
    fp8 = FP8Linear(768, 2048, bias=False)
    fp8.fp8_weight_grad = fp8_weight_grad
    for layer in (fp8, torch.nn.Linear(768, 2048, bias=False)):
        layer = layer.cuda()
        layer.weight.data.copy_(weight)
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", torch.bfloat16, enabled=isinstance(layer, FP8Linear)):
            y = layer(xi)
        (y.float() * upstream).sum().backward()
        results.append((y.float(), xi.grad.float(), layer.weight.grad.float()))
    for fast, exact in zip(*results):
        assert F.cosine_similarity(fast.flatten(), exact.flatten(), dim=0).item() > 0.995
        assert ((fast - exact).norm() / exact.norm()).item() < 0.1  # the scale too: a cosine does not see it
