"""The training loop: plain PyTorch, read top to bottom (not the HF Trainer).

`prepare` turns a model, its data and the `train` section into a `Training`: the speed plan for
this hardware (ltm.train.speed) is made and the model's numerics set before anything moves, so
`fit` receives a model that is ready and never changes what it computes. `fit` then runs it:
autocast, torch.compile (CUDA graphs where they pay), SDPA attention, fused AdamW (or Muon), warmup
+ cosine or warmup-stable-decay, gradient accumulation and clipping, the loss as a mean over the
targets the dataset's loss mask leaves learned, a held-out loss every `eval_every` steps, metrics
and a progress bar (ltm.train.record), atomic checkpoints every `checkpoint_every` steps (sharded
through torch.distributed.checkpoint under FSDP), DDP or FSDP2 under torchrun on one node or
several. The final model goes to OUT/checkpoint (save_pretrained + tokenizer).
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ltm.config import TrainConfig
from ltm.io import atomic_dir
from ltm.log import info, warn
from ltm.model.modeling import IGNORE_INDEX, LtmModel
from ltm.model.numerics import set_numerics
from ltm.train import checkpoint as ckpt
from ltm.train import distributed
from ltm.train.data import ShardBatches
from ltm.train.hardware import check_fits, peak_flops, training_bytes
from ltm.train.optim import make_optimizers, set_lr
from ltm.train.record import Recorder
from ltm.train.schedule import lr_at
from ltm.train.speed import SpeedError, SpeedPlan, plan_speed


class TrainError(ValueError):
    pass


@dataclass
class Training:
    """One run of `fit`: what trains, on what, how fast, and where it writes. Made by `prepare`."""

    model: torch.nn.Module  # an LtmForCausalLM, or anything with its forward(x, y) -> .loss/.losses and counting methods
    tokenizer: object | None  # saved beside the final model, so a checkpoint is self-contained
    tc: TrainConfig
    speed: SpeedPlan
    batches: ShardBatches
    windows: list  # held-out (inputs, targets) pairs (data.loss_windows)
    out_dir: Path
    world: distributed.World
    start: int = 0  # the step to begin at (resuming)
    state: dict | None = None  # optimizer and random states to resume from
    fingerprint: str = ""  # of what shapes the loss curve, stored with each checkpoint
    measure_start: bool = False  # record the held-out loss before the first step as step 0
    name: str = "run"


def prepare(model: torch.nn.Module, tokenizer, tc: TrainConfig, batches: ShardBatches, windows: list, out_dir: Path,
            world: distributed.World, **run) -> Training:
    """Plan the run's speed for this hardware and set the model's numerics to match; refuse, before
    any weight moves, what cannot run here (a switch this GPU cannot honour, a model too large)."""
    seq_len, c = batches.seq_len, model.config
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # fewer than all under LoRA
    check_fits(training_bytes(model.num_parameters(), batches.micro_batch, seq_len, c.hidden_size, c.num_hidden_layers,
                              c.vocab_size, trainable), world.device)
    try:
        speed = plan_speed(tc.speed, model, world.device, world.size, tc.steps, tc.batch_size * seq_len,
                           model.flops_per_token(seq_len), peak_flops(world.device))
    except SpeedError as exc:
        raise TrainError(str(exc)) from None
    for warning in speed.warnings if world.main else []:
        warn(warning)
    numerics = set_numerics(model, speed.numerics)
    if world.main:
        info(f"speed ({tc.speed.mode}): {speed.describe()}" + (f" — {'; '.join(speed.reasons)}" if speed.reasons else ""))
        if speed.numerics.fp8_body:
            info(f"numerics: {numerics}")
    return Training(model, tokenizer, tc, speed, batches, windows, Path(out_dir), world, **run)


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, windows, device: torch.device, autocast: bool, batch_size: int = 32) -> float:
    """Mean loss over the learned targets of `windows` ((inputs, targets) pairs, data.loss_windows),
    `batch_size` windows of one length per forward pass, summed on the device: one host sync in all."""
    model.eval()
    total, count = torch.zeros((), device=device, dtype=torch.float64), 0
    by_length: dict[int, list] = {}
    for inputs, targets in windows:
        by_length.setdefault(len(inputs), []).append((inputs, targets))
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            targets = np.stack([t for _, t in chunk])
            learned = int((targets != IGNORE_INDEX).sum())
            if not learned:
                continue
            x = torch.from_numpy(np.stack([i for i, _ in chunk])).to(device)
            y = torch.from_numpy(targets).to(device)
            with _autocast(device, autocast):
                loss = model(x, y).loss  # the mean over the chunk's learned targets
            total += loss.double() * learned
            count += learned
    model.train()
    return float(total) / max(count, 1)


def fit(run: Training, on_step=None) -> None:
    """Train `run.model` for tc.steps steps. `on_step(step)`, when given, is called after each step
    (a profiler's step marker, say)."""
    model, tc, world, batches, speed = run.model, run.tc, run.world, run.batches, run.speed
    seq_len, device = batches.seq_len, world.device
    # The cores this process may use: an experiment's workers on CPUs each hold a share of them.
    torch.set_num_threads(tc.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) or 1)
    flops = model.flops_per_token(seq_len)
    if world.main:
        info(f"model: {model.num_parameters():,} parameters ({model.non_embedding_parameters():,} non-embedding), "
             f"{flops / 1e6:.1f} MFLOPs per token (forward+backward); extras: {model.config.describe_extras()}")
        info(f"data: {len(batches.tokens):,} training tokens; {tc.steps} steps of {tc.batch_size} x {seq_len} tokens "
             f"= {batches.epochs(tc.steps):.1f} passes; {world.size} process(es), micro-batch {batches.micro_batch}, "
             f"accumulation {batches.accumulation}")

    # The model on its device, in training mode (from_pretrained returns one in eval mode), wrapped
    # for several processes and compiled.
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 matmuls left outside autocast
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    for m in model.modules():
        if isinstance(m, LtmModel):
            m.prepare(device)
    wrapped = distributed.wrap(model, world, tc.distributed)
    model.train()
    # dynamic=False: a self-looped model's number of steps (drawn per forward pass) is then a constant
    # of each compiled graph, one graph per value, rather than a symbol the loop cannot unroll.
    compiled = torch.compile(wrapped, mode=speed.compile_mode, dynamic=False) if speed.compile else wrapped
    optimizers = make_optimizers(model, tc, device)
    if run.state is not None:
        if "sharded" in run.state:
            distributed.load_sharded(run.state["sharded"], model, optimizers)
        else:
            distributed.load_optimizer_states(model, optimizers, run.state["optimizers"], world)
        torch.set_rng_state(run.state["torch_rng"])
        if run.state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(run.state["cuda_rng"])

    recorder = Recorder(run.out_dir, world, run.start, tc.steps, tc.batch_size * seq_len, flops, peak_flops(device),
                        tc.logger, run.name, {"train": tc.model_dump(mode="json")})
    if run.measure_start and run.start == 0:
        before = heldout_loss(model, run.windows, device, speed.autocast, batches.micro_batch)
        recorder.write_start(before)
        if world.main:
            info(f"held-out loss before training: {before:.4f}")

    pending = None  # the last step's record, written once the next step is queued
    with recorder, _tuning(speed), _deterministic(speed):
        for step in range(run.start, tc.steps):
            set_lr(optimizers, lr := lr_at(step, tc))
            loss, parts = torch.zeros((), device=device), {}
            learned = max(batches.learned(step), 1)
            for micro in range(batches.accumulation):
                x, y = batches.batch(step, micro)
                # Each micro-batch's loss is a mean over its learned targets; weighted by their share of
                # the global batch's (times the ranks, which DDP averages over), the step's loss is the
                # mean over every learned target, masked or not: 1/accumulation without a mask.
                weight = int((y != IGNORE_INDEX).sum()) * world.size / learned
                x, y = _to(x, device), _to(y, device)
                last = micro == batches.accumulation - 1
                sync = nullcontext() if last or not hasattr(wrapped, "no_sync") else wrapped.no_sync()
                if speed.cuda_graphs and micro == 0:
                    # The previous step's graph outputs (loss, gradients) are read and released by now,
                    # so this step's replay may reuse their memory. Within a step, a second micro-batch
                    # gets memory of its own while the first one's gradients are still accumulating.
                    torch.compiler.cudagraph_mark_step_begin()
                with sync:
                    with _autocast(device, speed.autocast):
                        out = compiled(x, y, return_logits=False)  # the loss is all training needs
                    (out.loss * weight).backward()
                loss += out.loss.detach() * weight
                for key, value in out.losses.items():
                    parts[key] = parts.get(key, 0.0) + value * weight
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            if pending is not None:
                recorder.write(*pending)
            pending = (step, lr, recorder.scalars({"loss": loss, "grad_norm": grad_norm, **parts}))
            evaluate = (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps
            checkpoint = tc.checkpoint_every and (step + 1) % tc.checkpoint_every == 0 and step + 1 < tc.steps
            if evaluate or checkpoint:  # written now: a resumed run keeps the metrics up to its checkpoint
                # Every rank evaluates (under FSDP the forward pass needs all of them), after the step's timing.
                heldout = heldout_loss(model, run.windows, device, speed.autocast, batches.micro_batch) if evaluate else None
                recorder.write(*pending, heldout=heldout)
                pending = None
            if checkpoint:
                _save(run, step + 1, optimizers)
            if on_step is not None:
                on_step(step + 1)
        if pending is not None:
            recorder.write(*pending)
    _save(run, tc.steps, optimizers)
    final_state, _ = distributed.full_state(model, [], world)
    recorder.close()
    if world.main:
        with atomic_dir(run.out_dir / "checkpoint") as tmp:
            model.save_pretrained(str(tmp), state_dict=final_state)
            if run.tokenizer is not None:  # a checkpoint is self-contained: `ltm export` needs nothing else
                run.tokenizer.save_pretrained(str(tmp))
        info(f"trained to step {tc.steps} in {recorder.seconds():.0f}s; model: {run.out_dir / 'checkpoint'}")
    distributed.barrier(world)


def _autocast(device: torch.device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else nullcontext()


def _tuning(speed: SpeedPlan):
    """Inductor's coordinate-descent kernel tuning, for what compiles inside: the first step's graphs."""
    if not (speed.compile and speed.tune_kernels):
        return nullcontext()
    from torch._inductor import config as inductor_config

    return inductor_config.patch(coordinate_descent_tuning=True)


@contextmanager
def _deterministic(speed: SpeedPlan):
    """torch's deterministic algorithms for the block (the strict mode: with warn_only, flash
    attention keeps its timing-dependent backward), as they were after it: evaluation and the next
    run of the same process choose for themselves."""
    if not speed.deterministic:
        yield
        return
    # cuBLAS on one stream repeats anyway; the variable satisfies torch's check in strict mode.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill_before = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    # The strict mode also fills every new tensor with NaN, a debugging aid that changes no result
    # (every value read is written first) and cost eager training a kernel per allocation.
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill_before


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pinned host memory lets the copy to the GPU overlap the running step."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _save(run: Training, step: int, optimizers) -> None:
    if run.world.size > 1 and distributed.is_sharded(run.model):  # FSDP: shards written where they are, not gathered
        ckpt.save_sharded(run.out_dir, step, run.model, optimizers, run.world, run.fingerprint, run.tc.keep_checkpoints)
        return
    model_state, optimizer_states = distributed.full_state(run.model, optimizers, run.world)  # every rank takes part
    if run.world.main:
        ckpt.save(run.out_dir, step, run.model, model_state, optimizer_states, run.fingerprint, run.tc.keep_checkpoints)
    distributed.barrier(run.world)
