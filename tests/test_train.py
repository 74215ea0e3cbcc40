"""The training engine on CPU: data order, schedules, accumulation, optimizers, checkpoints and a
resume after SIGKILL, refusals, and DDP under torchrun (two Gloo processes)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ltm import log, stages
from ltm.config import SpeedConfig, TrainConfig, load_config
from ltm.dataset.reader import load_manifest
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.modeling import IGNORE_INDEX
from ltm.train import TrainError, train
from ltm.train.checkpoint import fingerprint
from ltm.train.data import ShardBatches, loss_windows
from ltm.train.hardware import check_fits, training_bytes
from ltm.train.loop import fit, prepare
from ltm.train.speed import SpeedError, plan_speed
from ltm.train.schedule import lr_at


@pytest.fixture
def dataset(tmp_path, tiny_config):
    config = load_config(tiny_config)
    stages.ingest(config.ingest.paths, tmp_path / "docs.jsonl")
    stages.scenes(tmp_path / "docs.jsonl", tmp_path / "scenes.jsonl", config)
    stages.build(config, tmp_path / "scenes.jsonl", tmp_path / "ds")
    return config, tmp_path / "ds"


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def with_train(config, **changes):
    changed = config.model_copy(deep=True)
    changed.train = changed.train.model_copy(update=changes)
    return changed


def with_speed(config, **switches):
    return with_train(config, speed=config.train.speed.model_copy(update=switches))


def run_fit(model, tc: TrainConfig, batches, windows, out: Path, world, on_step=None) -> None:
    fit(prepare(model, None, tc, batches, windows, out, world), on_step=on_step)


def plan(model, device: str, processes: int = 1, **switches):
    return plan_speed(SpeedConfig(**switches), model, torch.device(device), processes, steps=100, tokens_per_step=1024,
                      flops_per_token=1e6, peak_flops=1e15 if device == "cuda" else None)


# --- data and schedules -------------------------------------------------------------------------------


def test_batches_are_consecutive_windows_that_wrap_and_do_not_depend_on_the_device_count():
    tokens = np.arange(84, dtype=np.uint16)
    one = ShardBatches(tokens, seq_len=4, batch_size=4, micro_batch=4)
    x, y = one.batch(0)
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]] and y[0].tolist() == [1, 2, 3, 4]
    # 20 windows: step 5 wraps to the start, cut 37 mod 4 = 1 token later.
    assert one.batch(5)[0][:, 0].tolist() == [1, 5, 9, 13]
    assert all(int(x[-1, -1]) < 84 for step in range(40) for x in [one.batch(step)[1]])
    shards = [ShardBatches(tokens, 4, 4, micro_batch=1, rank=r, world=2) for r in range(2)]
    split = sorted(row for s in shards for m in range(s.accumulation) for row in s.batch(3, m)[0][:, 0].tolist())
    assert split == sorted(one.batch(3)[0][:, 0].tolist())  # two ranks x two micro-batches = the same global batch
    with pytest.raises(ValueError, match="not a multiple"):
        ShardBatches(tokens, 4, 6, micro_batch=4)


def test_schedules():
    cosine = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cosine) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, rel=0.01)
    wsd = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.0, schedule="wsd", decay_fraction=0.2)
    lrs = [lr_at(s, wsd) for s in range(100)]
    assert lrs[10:80] == [1.0] * 70 and lrs[80] == 1.0 and lrs[-1] == pytest.approx(0.05) and lrs[90] == pytest.approx(0.5)


def test_memory_estimate_refuses_a_config_that_does_not_fit(monkeypatch):
    need = training_bytes(124_000_000, micro_batch=64, seq_len=1024, hidden=768, layers=12, vocab=50304)
    assert 40 * 2**30 < need < 200 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    with pytest.raises(MemoryError, match="lower train.micro_batch_size"):
        check_fits(need, torch.device("cuda"))
    check_fits(need // 100, torch.device("cuda"))


# --- the loop ------------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_metrics_and_events(dataset, tmp_path, capsys, monkeypatch):
    config, ds = dataset
    monkeypatch.setattr(log, "PLAIN_EVERY_S", 0.0)
    capsys.readouterr()
    checkpoint = train(config, ds, tmp_path / "train")
    # stderr is not a terminal here, as when piped: progress comes as plain lines, the last one whole
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train ")]
    assert len(shown) == 31 and shown[-1].startswith("train 30/30 ") and "held-out" in shown[-1]
    metrics = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 31))
    assert np.mean([m["loss"] for m in metrics[-5:]]) < metrics[0]["loss"] - 0.5
    assert [m["step"] for m in metrics if "heldout_loss" in m] == [10, 20, 30]
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "tokenizer.json").exists()
    assert list((tmp_path / "train" / "tensorboard").glob("events.out.tfevents.*"))


def test_gradient_accumulation_matches_one_big_batch(dataset, tmp_path):
    config, ds = dataset
    train(config, ds, tmp_path / "big")
    train(with_train(config, micro_batch_size=2), ds, tmp_path / "accumulated")
    assert np.allclose(losses(tmp_path / "big"), losses(tmp_path / "accumulated"), atol=2e-4)


def test_muon_trains_too(dataset, tmp_path):
    config, ds = dataset
    train(with_train(config, optimizer="muon", lr=0.02), ds, tmp_path / "muon")
    curve = losses(tmp_path / "muon")
    assert np.mean(curve[-5:]) < curve[0] - 0.5


@pytest.mark.parametrize("fp8_weight_grad", [False, True])
def test_fp8_head_fp8_body_and_bf16_residual_train_on_the_cpu_and_bad_shapes_are_refused(dataset, tmp_path, fp8_weight_grad):
    config, ds = dataset
    fast = with_speed(config, precision="bf16", residual_dtype="bf16", fp8_head=True, fp8_body=True, fp8_weight_grad=fp8_weight_grad)
    train(fast, ds, tmp_path / "fast")
    curve = losses(tmp_path / "fast")
    assert np.mean(curve[-5:]) < curve[0] - 0.5
    odd = fast.model_copy(deep=True)
    odd.model.d_model, odd.model.n_heads, odd.model.n_kv_heads = 36, 4, 2
    with pytest.raises(TrainError, match="multiples of 16"):
        train(odd, ds, tmp_path / "odd")


def test_fp8_is_refused_on_a_gpu_without_fp8_and_the_model_is_set_before_it_moves(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    model = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    for name in ("fp8_head", "fp8_body"):
        with pytest.raises(SpeedError, match="A100.*has none: leave it unset"):
            plan(model, "cuda", **{name: True})
    on_a100 = plan(model, "cuda")  # auto on a GPU without FP8: no FP8, and it says why
    assert not (on_a100.numerics.fp8_head or on_a100.numerics.fp8_body) and on_a100.numerics.residual_bf16
    assert any("no FP8 tensor cores" in reason for reason in on_a100.reasons)
    from ltm.model.fp8_linear import FP8Linear
    from ltm.model.numerics import set_numerics

    set_numerics(model, plan(model, "cuda", residual_dtype="fp32").numerics)
    assert model.model.autocast_residual is False and model.fp8_head is False
    assert not any(isinstance(m, FP8Linear) for m in model.modules())
    set_numerics(model, plan(model, "cpu", fp8_head=True, fp8_body=True).numerics)  # the CPU runs FP8 slowly
    assert model.fp8_head and sum(isinstance(m, FP8Linear) for m in model.modules()) == 7  # q, k, v, o, gate, up, down
    assert not any(m.fp8_weight_grad for m in model.modules() if isinstance(m, FP8Linear))


def test_auto_picks_fp8_on_an_fp8_gpu_exact_keeps_the_reference_and_fast_tunes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    model = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    auto = plan(model, "cuda")
    assert (auto.numerics.fp8_head, auto.numerics.fp8_body, auto.numerics.fp8_weight_grad) == (True, True, True)
    eager = plan(model, "cuda", compile=False)  # unfused, FP8's scaling kernels cost more than its products save
    assert eager.numerics.describe() == "no FP8, bf16 residual stream" and any("eagerly" in r for r in eager.reasons)
    asked = plan(model, "cuda", compile=False, fp8_body=True)  # asked for, it is kept, and the log does not deny it
    assert asked.numerics.fp8_body and not any("no FP8" in r for r in asked.reasons)
    assert auto.cuda_graphs and not auto.tune_kernels  # a short run: tuning would not pay
    long_run = plan_speed(SpeedConfig(), model, torch.device("cuda"), 1, steps=10**6, tokens_per_step=10**6, flops_per_token=1e9,
                          peak_flops=1e15)
    assert long_run.tune_kernels
    assert plan(model, "cuda", mode="fast").tune_kernels
    exact = plan(model, "cuda", mode="exact")
    assert exact.numerics.describe() == "no FP8" and not exact.cuda_graphs and not exact.tune_kernels and exact.autocast
    assert not plan(model, "cuda", fp8_body=False).numerics.fp8_weight_grad  # weight gradients follow the body
    odd = LtmForCausalLM(LtmConfig(vocab_size=66, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    assert not plan(odd, "cuda").numerics.fp8_head and plan(odd, "cuda").numerics.fp8_body  # auto leaves out what cannot run
    cpu = plan(model, "cpu")
    assert (cpu.autocast, cpu.compile, cpu.numerics.describe()) == (False, False, "no FP8")
    # Deterministic kernels on a GPU unless the run asks for speed over repeatability.
    assert auto.deterministic and exact.deterministic and not cpu.deterministic
    assert not plan(model, "cuda", mode="fast").deterministic and not plan(model, "cuda", deterministic=False).deterministic


def test_deterministic_kernels_are_on_for_the_block_only():
    from ltm.model.numerics import Numerics
    from ltm.train.loop import _deterministic
    from ltm.train.speed import SpeedPlan

    plan_on = SpeedPlan(autocast=False, compile=False, compile_mode=None, tune_kernels=False, numerics=Numerics(), deterministic=True)
    assert not torch.are_deterministic_algorithms_enabled() and torch.utils.deterministic.fill_uninitialized_memory
    with _deterministic(plan_on):
        assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory  # no NaN fill of every new tensor
    assert not torch.are_deterministic_algorithms_enabled()  # evaluation and the process's next run choose for themselves
    assert torch.utils.deterministic.fill_uninitialized_memory


def test_heldout_loss_in_batches_is_the_mean_over_every_learned_target():
    from ltm.train.loop import heldout_loss

    torch.manual_seed(0)
    model = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    tokens = np.random.default_rng(0).integers(0, 64, size=333).astype(np.uint16)
    windows = loss_windows(tokens, 16)  # 21 windows, the last one shorter
    windows[3][1][:5] = IGNORE_INDEX  # some targets masked
    reference = sum(float(model(torch.from_numpy(x)[None], torch.from_numpy(y)[None]).loss) * int((y != IGNORE_INDEX).sum())
                    for x, y in windows) / sum(int((y != IGNORE_INDEX).sum()) for _, y in windows)
    for batch in (1, 4, 64):
        assert heldout_loss(model, windows, torch.device("cpu"), False, batch) == pytest.approx(reference, rel=1e-5)


def test_fp8_weight_gradients_need_the_fp8_body():
    with pytest.raises(ValueError, match="fp8_weight_grad: true needs fp8_body"):
        SpeedConfig(fp8_weight_grad=True, fp8_body=False)
    assert SpeedConfig.model_validate("fast").mode == "fast"  # `speed: fast` in YAML
    model = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    from ltm.model.fp8_linear import FP8Linear
    from ltm.model.numerics import set_numerics

    set_numerics(model, plan(model, "cpu", fp8_body=True, fp8_weight_grad=True).numerics)
    assert [m.fp8_weight_grad for m in model.modules() if isinstance(m, FP8Linear)] == [True] * 7


def test_cuda_graph_steps_are_marked_once_per_optimizer_step_and_kernel_tuning_covers_compilation(dataset, tmp_path, monkeypatch):
    """The CPU cannot replay CUDA graphs, so torch.compile is replaced by a recorder: what the loop
    asks of it is checked here, the graphs themselves by test_train_cuda.py on a GPU."""
    from torch._inductor import config as inductor_config

    config, ds = dataset
    calls, marks = [], []

    def fake_compile(module, mode=None, dynamic=None):
        def run(*args, **kwargs):
            calls.append((mode, inductor_config.coordinate_descent_tuning, len(marks)))
            return module(*args, **kwargs)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    fast = with_speed(with_train(config, steps=6, micro_batch_size=2), compile=True, compile_mode="reduce-overhead", tune_kernels=True)
    train(fast, ds, tmp_path / "graphs")
    accumulation = config.train.batch_size // 2
    assert len(calls) == 6 * accumulation and len(marks) == 6
    assert [seen for _, _, seen in calls] == [step + 1 for step in range(6) for _ in range(accumulation)]
    assert {(mode, tuned) for mode, tuned, _ in calls} == {("reduce-overhead", True)}
    assert inductor_config.coordinate_descent_tuning is False  # patched for the run only
    train(with_speed(fast, compile=False), ds, tmp_path / "plain")
    assert losses(tmp_path / "graphs") == losses(tmp_path / "plain")


def test_a_self_looped_model_with_every_extra_compiles_and_follows_the_eager_curve(tmp_path):
    """The loop's step count is drawn per forward pass; compiled, each count is its own graph."""
    from test_model import IDS, SWITCHES, VOCAB, scene_batch

    from ltm.train.distributed import World

    stream = scene_batch(64).flatten().numpy().astype(np.uint16)
    curves = []
    for compiled in (False, True):
        torch.manual_seed(0)
        extras = SWITCHES["all"] | {"loop_max_steps": 2, "loop_prelude_layers": 0, "loop_core_layers": 1}
        model = LtmForCausalLM(LtmConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, max_position_embeddings=32, scene_token_ids=IDS, **extras))
        tc = TrainConfig(steps=5, batch_size=4, lr=3e-3, warmup_steps=1, eval_every=10**9, logger="none", speed={"compile": compiled})
        run_fit(model, tc, ShardBatches(stream, 32, 4, 4, 0, 1), loss_windows(stream[:33], 32), tmp_path / str(compiled),
                World(0, 1, 0, torch.device("cpu")))
        curves.append(losses(tmp_path / str(compiled)))
    assert np.allclose(*curves, atol=1e-3), curves


def test_a_model_handed_over_in_eval_mode_trains_in_training_mode(tmp_path):
    """from_pretrained (resume, initiation, tune) returns a model in eval mode, where the FP8 head is
    off and a self-looped model does not draw its step count."""
    from ltm.train.distributed import World

    model = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)).eval()
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append(module.training))
    tokens = np.arange(4000, dtype=np.uint16) % 64
    run_fit(model, TrainConfig(steps=2, batch_size=2, warmup_steps=1, eval_every=10**9, logger="none"), ShardBatches(tokens, 16, 2, 2, 0, 1),
            loss_windows(tokens[:17], 16), tmp_path, World(0, 1, 0, torch.device("cpu")))
    assert seen[:2] == [True, True]  # the two training steps; the held-out pass at the end runs in eval mode


def test_each_record_times_its_own_step_although_it_is_written_after_the_next(tmp_path):
    """The log writes a step's record once the next step is queued; its elapsed_s must still be
    when that step ended. Timed at writing, a pause after step 3 landed in step 3's interval (and a
    benchmark timed from its first record over-counted a whole step's tokens)."""
    from ltm.train.distributed import World

    model = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    tokens = np.arange(4000, dtype=np.uint16) % 64
    pause = 0.5
    run_fit(model, TrainConfig(steps=5, batch_size=2, warmup_steps=1, eval_every=10**9, logger="none", speed={"compile": False}),
            ShardBatches(tokens, 16, 2, 2, 0, 1), loss_windows(tokens[:17], 16), tmp_path, World(0, 1, 0, torch.device("cpu")),
            on_step=lambda step: time.sleep(pause) if step == 3 else None)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    gaps = {r["step"]: r["elapsed_s"] - q["elapsed_s"] for q, r in zip(records, records[1:])}
    assert gaps[4] >= pause > gaps[3] + 0.2  # step 4 began after the pause; step 3 ended before it


def test_cuda_graphs_are_refused_under_torchrun_and_for_a_looped_model_and_auto_picks_them_on_one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # a GPU without FP8
    from transformers import GPT2Config, GPT2LMHeadModel

    from ltm.config import InitiationConfig
    from ltm.train.adapters import Trainable, with_lora

    plain = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2))
    looped = LtmForCausalLM(LtmConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                      loop_core_layers=1))
    with pytest.raises(SpeedError, match="reduce-overhead.*under torchrun"):
        plan(plain, "cpu", processes=2, compile=True, compile_mode="reduce-overhead")
    with pytest.raises(SpeedError, match="self-looped"):
        plan(looped, "cuda", compile_mode="reduce-overhead")
    gpt2 = lambda: GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))  # noqa: E731
    theirs = Trainable(gpt2(), "")  # as `ltm tune` passes a user's model, every parameter trained
    their_lora = Trainable(with_lora(gpt2(), InitiationConfig(mode="lora")), "")
    cases = (((plain, "cuda", 1), True), ((looped, "cuda", 1), False), ((plain, "cuda", 2), False),
             ((Trainable(plain, ""), "cuda", 1), True), ((Trainable(looped, ""), "cuda", 1), False),
             ((their_lora, "cuda", 1), True), ((theirs, "cuda", 1), False), ((their_lora, "cpu", 1), False))
    assert [plan(m, device, processes).cuda_graphs for (m, device, processes), _ in cases] == [graphs for _, graphs in cases]
    assert plan(theirs, "cuda", fp8_head=True).warnings  # a switch for ltm's model, on a user's model: a warning, not an error


# --- checkpoints and resume -----------------------------------------------------------------------


def _train_process(config_path: Path, ds: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ltm.cli", "train", str(config_path), "--data", str(ds), "-o", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_with_sigkill_resumes_on_the_same_curve(dataset, tmp_path):
    config, ds = dataset
    config = with_train(config, steps=400, checkpoint_every=40, eval_every=100, logger="none")
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert subprocess.run([sys.executable, "-m", "ltm.cli", "train", str(path), "--data", str(ds), "-o", str(tmp_path / "whole")],
                          capture_output=True).returncode == 0
    victim = _train_process(path, ds, tmp_path / "killed")
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoints" / "step_0000080").exists():
        assert victim.poll() is None, victim.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "checkpoint").exists()  # it died before the end
    resumed = _train_process(path, ds, tmp_path / "killed", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    whole, again = losses(tmp_path / "whole"), losses(tmp_path / "killed")
    assert len(again) == 400 and np.allclose(whole, again, atol=1e-5)


def test_resume_refuses_another_config_or_nothing_to_resume(dataset, tmp_path):
    config, ds = dataset
    with pytest.raises(TrainError, match="no checkpoint"):
        train(config, ds, tmp_path / "fresh", resume=True)
    train(with_train(config, steps=10), ds, tmp_path / "run")
    with pytest.raises(TrainError, match="different config or dataset"):
        train(with_train(config, steps=10, lr=0.1), ds, tmp_path / "run", resume=True)
    # Rounding choices may change on resume (a run begun with an FP8 head may finish on a GPU without one).
    manifest = load_manifest(ds)
    assert fingerprint(with_speed(config, mode="exact", fp8_head=True), manifest) == fingerprint(config, manifest)


def test_a_folder_with_an_earlier_run_is_refused_without_resume_or_overwrite(dataset, tmp_path):
    config, ds = dataset
    old = with_train(config, steps=20, checkpoint_every=10, keep_checkpoints=1, logger="none")
    train(old, ds, tmp_path / "run")
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_0000020"]
    new = with_train(old, steps=10, checkpoint_every=5, lr=0.1)
    with pytest.raises(TrainError, match="earlier run .*--resume.*--overwrite"):
        train(new, ds, tmp_path / "run")
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_0000020"]  # untouched
    train(new, ds, tmp_path / "run", overwrite=True)
    # Only the new run's checkpoints: its own last one was not pruned in favour of the old run's step 20.
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_0000010"]
    assert len(losses(tmp_path / "run")) == 10
    with pytest.raises(TrainError, match="different config"):  # a resume finds the new run, not the old one
        train(old, ds, tmp_path / "run", resume=True)


def test_a_dataset_whose_tokenizer_was_swapped_is_refused(dataset, tmp_path):
    config, ds = dataset
    tokenizer_json = ds / "tokenizer" / "tokenizer.json"
    tokenizer_json.write_text(tokenizer_json.read_text().replace('"<|scene|>"', '"<|scene2|>"'))
    with pytest.raises(TrainError, match="differs from the one the shards were built with"):
        train(config, ds, tmp_path / "run")


# --- several processes ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_two_processes_follow_the_single_process_curve(dataset, tmp_path, strategy):
    config, ds = dataset
    config = with_train(config, steps=12, eval_every=6, distributed=strategy, logger="none", threads=1)
    path = tmp_path / "dist.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    train(config, ds, tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ltm.cli",
                             "train", str(path), "--data", str(ds), "-o", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.allclose(losses(tmp_path / "single"), losses(tmp_path / "two"), atol=1e-3)
    assert (tmp_path / "two" / "checkpoint" / "model.safetensors").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_follow_the_single_process_curve_and_their_sharded_checkpoint_resumes_on_one(dataset, tmp_path):
    """Two torchrun agents of one process each, met through c10d rendezvous on localhost (Gloo), as two
    machines would; FSDP checkpoints are written shard by shard (torch.distributed.checkpoint) and a
    resume in a single process continues the same loss curve."""
    config, ds = dataset
    config = with_train(config, steps=12, eval_every=6, checkpoint_every=6, keep_checkpoints=5, distributed="fsdp", logger="none",
                        threads=1)
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    train(config, ds, tmp_path / "single")
    env, port = {**os.environ, "OMP_NUM_THREADS": "1"}, _free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "ltm-test",
                               "--rdzv-conf", f"is_host={int(node == 0)}", "--local-addr", "127.0.0.1", "-m", "ltm.cli",
                               "train", str(path), "--data", str(ds), "-o", str(tmp_path / "nodes")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) for node in range(2)]
    for node in nodes:
        assert node.wait(timeout=300) == 0, node.stderr.read()[-3000:]
    single = losses(tmp_path / "single")
    assert np.allclose(single, losses(tmp_path / "nodes"), atol=1e-3)
    assert (tmp_path / "nodes" / "checkpoint" / "model.safetensors").exists()  # the final model: a Hugging Face folder
    middle = tmp_path / "nodes" / "checkpoints" / "step_0000006"
    assert (middle / "dcp" / ".metadata").exists() and len(list((middle / "dcp").glob("*.distcp"))) == 2
    assert not (middle / "model.safetensors").exists()  # nothing gathered

    # As if the two-node job died after step 6: one process takes it up from the shards.
    import shutil

    shutil.rmtree(tmp_path / "nodes" / "checkpoints" / "step_0000012")
    shutil.rmtree(tmp_path / "nodes" / "checkpoint")
    train(config, ds, tmp_path / "nodes", resume=True)
    assert np.allclose(single, losses(tmp_path / "nodes"), atol=1e-3)
