"""The training loop: plain PyTorch, read top to bottom (not the HF Trainer).

bf16 autocast on GPUs (a bf16 residual stream, and optionally an FP8 output projection and loss),
torch.compile, SDPA attention, fused AdamW (or Muon), warmup + cosine or warmup-stable-decay,
gradient accumulation and clipping, a held-out loss every `eval_every` steps, a rich progress bar
(loss, tokens/s, MFU, ETA), metrics as JSON lines and TensorBoard events, atomic checkpoints every
`checkpoint_every` steps, `resume` from the last one, DDP or FSDP2 under torchrun. The final model
goes to OUT/checkpoint (save_pretrained + tokenizer).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ltm.build.dataset import load_manifest, load_split
from ltm.build.shards import load_masked
from ltm.build.tokenizer import load_tokenizer, marker_ids, tokenizer_sha256
from ltm.config import ModelConfig, RunConfig, TrainConfig
from ltm.io import atomic_dir
from ltm.log import info, progress, warn
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.modeling import IGNORE_INDEX, LtmModel
from ltm.model.fp8_linear import fp8_supported, use_fp8_linears
from ltm.train import checkpoint as ckpt
from ltm.train import distributed
from ltm.train.data import NO_MASK, LossMask, ShardBatches, loss_windows
from ltm.train.hardware import check_fits, peak_flops, training_bytes
from ltm.train.optim import make_optimizers, set_lr
from ltm.train.schedule import lr_at


class TrainError(ValueError):
    pass


EXTRA_FIELDS = {"scene_state", "channels", "channel_names", "channel_aux_weight", "loop_core_layers", "loop_prelude_layers",
                "loop_max_steps", "loop_backprop_steps", "think_steps", "scene_aux_weight", "loop_aux_weight"}


def model_config(model: ModelConfig, vocab_size: int, scene_token_ids: dict[str, int]) -> LtmConfig:
    return LtmConfig(
        vocab_size=vocab_size, hidden_size=model.d_model, intermediate_size=model.d_ff, num_hidden_layers=model.n_layers,
        num_attention_heads=model.n_heads, num_key_value_heads=model.n_kv_heads, max_position_embeddings=model.max_seq_len,
        rope_theta=model.rope_theta, tie_word_embeddings=model.tie_embeddings, scene_token_ids=scene_token_ids,
        **model.model_dump(include=EXTRA_FIELDS),
    )


def build_model(config: RunConfig, tokenizer) -> LtmForCausalLM:
    """The model at initialisation; the same seed always gives the same weights (the untrained reference)."""
    torch.manual_seed(config.seed)
    return LtmForCausalLM(model_config(config.model, len(tokenizer), marker_ids(tokenizer)))


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, windows, device: torch.device, autocast) -> float:
    """Mean loss over the learned targets of `windows` ((inputs, targets) pairs, data.loss_windows)."""
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in windows:
        learned = int((targets != IGNORE_INDEX).sum())
        if not learned:
            continue
        x = torch.from_numpy(inputs).unsqueeze(0).to(device)
        y = torch.from_numpy(targets).unsqueeze(0).to(device)
        with autocast():
            loss = model(x, y).loss
        total += loss.item() * learned
        count += learned
    model.train()
    return total / max(count, 1)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def train(config: RunConfig, dataset_dir: str | Path, out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Pretrain on DATASET_DIR; write OUT_DIR/metrics.jsonl, checkpoints/ and checkpoint/ (the final model).
    An OUT_DIR that holds an earlier run is refused unless the run `resume`s it or may `overwrite` it:
    a fresh run's checkpoints mixed with older ones would be pruned by step number, and a later
    resume would pick the wrong run."""
    out_dir, tc = Path(out_dir), config.train
    world = distributed.setup(tc.device)
    try:
        if not resume and (earlier := ckpt.earlier_run(out_dir)):
            if not overwrite:
                raise TrainError(f"{out_dir} holds an earlier run ({', '.join(earlier)}): pass --resume to continue it, "
                                 "or --overwrite to delete it and start again")
            if world.main:
                ckpt.clear_run(out_dir)
                info(f"{out_dir}: the earlier run's {', '.join(earlier)} deleted (--overwrite)")
            distributed.barrier(world)
        manifest = load_manifest(dataset_dir)
        tokenizer = load_tokenizer(Path(dataset_dir) / manifest.tokenizer)
        if tokenizer_sha256(Path(dataset_dir) / manifest.tokenizer) != manifest.tokenizer_sha256:
            raise TrainError(f"{dataset_dir}: the tokenizer folder differs from the one the shards were built with")
        print_ = ckpt.fingerprint(config, manifest)
        model, start, state = build_model(config, tokenizer), 0, None
        if resume:
            found = ckpt.latest(out_dir)
            if found is None:
                raise TrainError(f"--resume: no checkpoint under {out_dir / 'checkpoints'}")
            meta, state = ckpt.read_state(found)
            if meta["fingerprint"] != print_:
                raise TrainError(f"--resume: {found} was written by a different config or dataset (fingerprint "
                                 f"{meta['fingerprint']} != {print_}); resume with the config it was started with")
            model = LtmForCausalLM.from_pretrained(str(found))
            start = meta["step"]
            info(f"resuming from {found} at step {start}")
        seq_len = model.config.max_position_embeddings
        batches, windows = dataset_batches(dataset_dir, manifest, seq_len, tc, world)
        fit(model, tokenizer, tc, batches, windows, out_dir, world, start, state, print_)
    finally:
        distributed.teardown(world)
    return out_dir / "checkpoint"


def shard_batches(tokens, seq_len: int, tc: TrainConfig, world, source, mask: LossMask = NO_MASK) -> ShardBatches:
    micro = tc.micro_batch_size or max(tc.batch_size // world.size, 1)
    try:
        return ShardBatches(tokens, seq_len, tc.batch_size, micro, world.rank, world.size, mask)
    except ValueError as exc:
        raise TrainError(f"{source}: {exc}") from None


def dataset_batches(dataset_dir: str | Path, manifest, seq_len: int, tc: TrainConfig, world) -> tuple[ShardBatches, list]:
    """A built dataset's training batches and held-out loss windows, each under the split's loss mask."""
    batches = shard_batches(load_split(dataset_dir, manifest, "train"), seq_len, tc, world, dataset_dir,
                            LossMask(*load_masked(dataset_dir, "train")))
    windows = loss_windows(load_split(dataset_dir, manifest, "heldout"), seq_len, tc.eval_batches * tc.batch_size,
                           LossMask(*load_masked(dataset_dir, "heldout")))
    return batches, windows


def fit(model, tokenizer, tc: TrainConfig, batches: ShardBatches, windows, out_dir: Path, world, start: int = 0, state=None,
        print_: str = "", on_step=None, measure_start: bool = False) -> None:
    """Train `model` (an LtmForCausalLM, or anything with its forward(x, y) -> .loss/.losses and
    its counting methods) for tc.steps on `batches`, measuring held-out loss on `windows`
    ((inputs, targets) pairs, data.loss_windows). `on_step(step)`, when given, is called after each
    step (a profiler's step marker, say). `measure_start` writes the held-out loss before the first
    step as metrics.jsonl's step-0 record (what a final stage starts from)."""
    seq_len, micro = batches.seq_len, batches.micro_batch
    c = model.config
    use_compile = tc.compile if tc.compile is not None else world.device.type == "cuda"
    mode = _compile_mode(tc, model, world) if use_compile else None  # refuses CUDA graphs where unsafe, before the GPU is used
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # fewer than all under LoRA
    check_fits(training_bytes(model.num_parameters(), micro, seq_len, c.hidden_size, c.num_hidden_layers, c.vocab_size,
                              trainable), world.device)
    torch.set_num_threads(tc.threads or os.cpu_count() or 1)
    flops = model.flops_per_token(seq_len)
    if world.main:
        info(f"model: {model.num_parameters():,} parameters ({model.non_embedding_parameters():,} non-embedding), "
             f"{flops / 1e6:.1f} MFLOPs per token (forward+backward); extras: {model.config.describe_extras()}")
        info(f"data: {len(batches.tokens):,} training tokens; {tc.steps} steps of {tc.batch_size} x {seq_len} tokens "
             f"= {batches.epochs(tc.steps):.1f} passes; {world.size} process(es), micro-batch {micro}, accumulation {batches.accumulation}")

    if world.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 matmuls left outside autocast
        torch.backends.cudnn.allow_tf32 = True
    _precision_options(model, tc, world.device)  # refuses an FP8 head on a GPU without FP8 before any weight moves
    model.to(world.device)
    for m in model.modules():
        if isinstance(m, LtmModel):
            m.prepare(world.device)
    wrapped = distributed.wrap(model, world, tc.distributed)
    model.train()  # from_pretrained (resume, initiation, tune) returns a model in eval mode
    # dynamic=False: a self-looped model's number of steps (drawn per forward pass) is then a constant
    # of each compiled graph, one graph per value, rather than a symbol the loop cannot unroll.
    compiled = torch.compile(wrapped, mode=mode, dynamic=False) if use_compile else wrapped
    graphs = mode == "reduce-overhead"  # mode is None when nothing compiles
    optimizers = make_optimizers(model, tc, world.device)
    if state is not None:
        distributed.load_optimizer_states(model, optimizers, state["optimizers"], world)
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    autocast = _autocast(world.device, tc.precision)
    peak = peak_flops(world.device)

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"
    if world.main:
        _truncate_metrics(metrics_path, start)
    writer = _tensorboard(out_dir, tc) if world.main else None
    tokens_per_step = tc.batch_size * seq_len
    metrics = open(metrics_path, "a", encoding="utf-8") if world.main else None
    bar = progress() if world.main else nullcontext()
    started, timed_from, timed_steps = time.perf_counter(), None, 0
    clock = _StepClock(world.device)
    pending = None

    def write(step, lr, scalars: "_HostScalars", evaluate: bool = False) -> None:
        nonlocal timed_from, timed_steps
        values = scalars.read()  # waits for this step on the GPU, not for the one queued after it
        loss, grad_norm = distributed.mean(values.pop("loss"), world), values.pop("grad_norm")
        now = clock.seconds(scalars.finished)  # when the step ended, not when its record is written
        if step == start:  # the first step includes compilation: the speed is timed from its end
            timed_from, tokens_per_s = now, tokens_per_step / max(now - started, 1e-9)
        else:
            timed_steps += 1
            tokens_per_s = tokens_per_step * timed_steps / max(now - timed_from, 1e-9)
        record = {"step": step + 1, "loss": round(loss, 5), "lr": lr, "grad_norm": round(grad_norm, 4),
                  "tokens": (step + 1) * tokens_per_step, "tokens_per_s": round(tokens_per_s, 1),
                  "elapsed_s": round(now - started, 3)}
        if peak:
            record["mfu"] = round(flops * tokens_per_s / (peak * world.size), 4)
        if len(values) > 1:
            record |= {f"loss_{k}": round(distributed.mean(v, world), 5) for k, v in values.items()}
        if evaluate:  # after the timing: the speed is the training's alone
            # Every rank evaluates: under FSDP the forward pass needs all of them.
            record["heldout_loss"] = round(heldout_loss(model, windows, world.device, autocast), 5)
        if world.main:
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            if writer is not None:
                for key, value in record.items():
                    if key not in ("step", "tokens") and value is not None:
                        writer.add_scalar(f"train/{key}", value, step + 1)
            shown = f"loss {record['loss']:.3f}  {tokens_per_s:,.0f} tok/s" + (f"  MFU {record['mfu']:.1%}" if peak else "")
            if "heldout_loss" in record:
                shown += f"  held-out {record['heldout_loss']:.3f}"
            bar.update(task, advance=1, info=shown)

    if measure_start and start == 0:
        before = heldout_loss(model, windows, world.device, autocast)
        if world.main:
            metrics.write(json.dumps({"step": 0, "tokens": 0, "heldout_loss": round(before, 5)}) + "\n")
            info(f"held-out loss before training: {before:.4f}")

    tuning = nullcontext()
    if use_compile and tc.tune_kernels:  # applies to what compiles inside the block below: the first step's graphs
        from torch._inductor import config as inductor_config

        tuning = inductor_config.patch(coordinate_descent_tuning=True)
    with bar, tuning:
        task = bar.add_task("train", total=tc.steps, completed=start, info="") if world.main else None
        for step in range(start, tc.steps):
            set_lr(optimizers, lr := lr_at(step, tc))
            loss_sum, parts = torch.zeros((), device=world.device), {}
            learned = max(batches.learned(step), 1)
            for micro_step in range(batches.accumulation):
                x, y = batches.batch(step, micro_step)
                # Each micro-batch's loss is a mean over its learned targets; weighted by their share of
                # the global batch's (times the ranks, which DDP averages over), the step's loss is the
                # mean over every learned target, masked or not: 1/accumulation without a mask.
                weight = int((y != IGNORE_INDEX).sum()) * world.size / learned
                x, y = _to(x, world.device), _to(y, world.device)
                last = micro_step == batches.accumulation - 1
                sync = nullcontext() if last or not hasattr(wrapped, "no_sync") else wrapped.no_sync()
                if graphs and micro_step == 0:
                    # The previous step's graph outputs (loss, gradients) are read and released by now,
                    # so this step's replay may reuse their memory. Within a step, a second micro-batch
                    # gets memory of its own while the first one's gradients are still accumulating.
                    torch.compiler.cudagraph_mark_step_begin()
                with sync:
                    with autocast():
                        out = compiled(x, y, return_logits=False)  # the loss is all training needs
                    (out.loss * weight).backward()
                loss_sum += out.loss.detach() * weight
                for key, value in out.losses.items():
                    parts[key] = parts.get(key, 0.0) + value * weight
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            # The step's record is written once the next step is queued, from scalars whose copy to
            # the host was queued right behind this step: the GPU never idles while the CPU logs.
            if pending is not None:
                write(*pending)
            pending = (step, lr, _HostScalars({"loss": loss_sum, "grad_norm": grad_norm, **parts}, clock))
            evaluate = (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps
            checkpoint = tc.checkpoint_every and (step + 1) % tc.checkpoint_every == 0 and step + 1 < tc.steps
            if evaluate or checkpoint:  # written now: a resumed run keeps the metrics up to its checkpoint
                write(*pending, evaluate=evaluate)
                pending = None
            if checkpoint:
                _save(out_dir, step + 1, model, optimizers, print_, tc, world)
            if on_step is not None:
                on_step(step + 1)
        if pending is not None:
            write(*pending)
    _save(out_dir, tc.steps, model, optimizers, print_, tc, world)
    final_state, _ = distributed.full_state(model, [], world)
    if world.main:
        metrics.close()
        if writer is not None:
            writer.close()
        with atomic_dir(out_dir / "checkpoint") as tmp:
            model.save_pretrained(str(tmp), state_dict=final_state)
            if tokenizer is not None:  # a checkpoint is self-contained: `ltm export` needs nothing else
                tokenizer.save_pretrained(str(tmp))
        info(f"trained to step {tc.steps} in {time.perf_counter() - started:.0f}s; model: {out_dir / 'checkpoint'}")
    distributed.barrier(world)


def _precision_options(model: torch.nn.Module, tc: TrainConfig, device: torch.device) -> None:
    """train.residual_dtype, train.fp8_head and train.fp8_body act on ltm's own model (also inside a
    LoRA wrapper: the frozen base products run in FP8, the adapters in bf16); another model (a
    user's HF folder) trains as it is."""
    wanted = [name for name in ("fp8_head", "fp8_body") if getattr(tc, name)]
    ours = [m for m in model.modules() if isinstance(m, LtmForCausalLM)]
    if not ours:
        for name in wanted:  # only an opt-in is worth a word: residual_dtype's default would warn at every tune
            warn(f"train.{name} applies to ltm's own model only; this one trains without it")
        return
    for name in wanted:
        if not fp8_supported(device):
            gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
            raise TrainError(f"train.{name} needs FP8 tensor cores (compute capability 8.9+: Ada, Hopper or newer); "
                             f"{gpu} has none: set train.{name}: false")
    for m in ours:
        m.model.autocast_residual = tc.residual_dtype == "bf16"
        c = m.config
        if tc.fp8_head and (c.vocab_size % 16 or c.hidden_size % 16):
            raise TrainError(f"train.fp8_head needs the vocabulary ({c.vocab_size}) and the width ({c.hidden_size}) "
                             "to be multiples of 16 (what the FP8 kernels take)")
        m.fp8_head = tc.fp8_head
        if tc.fp8_body:
            turned, kept = use_fp8_linears(m.model.layers, tc.fp8_weight_grad)
            info(f"fp8_body: {turned} products of the decoder layers run in FP8"
                 + (", their weight gradients too (fp8_weight_grad)" if tc.fp8_weight_grad else "")
                 + (f"; {kept} keep bf16 (a side that is not a multiple of 16)" if kept else ""))


def _compile_mode(tc: TrainConfig, model: torch.nn.Module, world) -> str:
    """torch.compile's mode. CUDA graphs (reduce-overhead) replay a step's kernels with one launch:
    2.7x tokens/s for a 10M model on an H100, +1.5% at 124M, 3.3x for LoRA on a 10M transformers
    Llama (docs/training.md). They are for one process, and not for a self-looped model, whose
    drawn step count splits the compiled graph. `auto` picks them for ltm's own model (pretraining,
    initiation) and for LoRA on the transformers models `ltm tune` trains, whose curves GPU tests
    check against the plain compiled ones (Llama, Qwen2, GPT-2); a fully tuned transformers model,
    untested with graphs and the largest in memory, compiles without them unless asked."""
    looped = any(isinstance(m, LtmModel) and m.config.loop_core_layers for m in model.modules())
    if tc.compile_mode == "auto":
        ours = isinstance(getattr(model, "base", model), LtmForCausalLM)  # adapters.Trainable: .base is the model inside
        adapters = any(not p.requires_grad for p in model.parameters())  # LoRA: the base is frozen
        graphs = (ours or adapters) and not looped and world.device.type == "cuda" and world.size == 1
        return "reduce-overhead" if graphs else "default"
    if tc.compile_mode == "reduce-overhead" and (world.size > 1 or looped):
        why = "under torchrun" if world.size > 1 else "for a self-looped model (model.loop_core_layers)"
        raise TrainError(f"train.compile_mode: reduce-overhead (CUDA graphs) is not available {why}; use default or auto")
    return tc.compile_mode


class _StepClock:
    """When each step ended. A record is written a step or more after its step (the CPU queues work
    ahead of the GPU, and the log waits for the next step to be queued), so the time of writing
    would shorten the first timed interval and overstate tokens/s. On a GPU the end of a step is a
    CUDA event on the GPU's own timeline, placed against the host clock once; on the CPU, whose
    steps run as they are issued, it is the host clock when the step returns."""

    def __init__(self, device: torch.device):
        self.anchor = None
        if device.type == "cuda":
            self.anchor = torch.cuda.Event(enable_timing=True)
            self.anchor.record()
            self.anchor.synchronize()  # the GPU is idle here: the event's time is now
        self.wall = time.perf_counter()

    def mark(self):
        if self.anchor is None:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, mark) -> float:
        """The host clock's reading (time.perf_counter) at `mark`; a GPU mark must have completed."""
        if self.anchor is None:
            return mark
        return self.wall + self.anchor.elapsed_time(mark) / 1000


class _HostScalars:
    """A step's scalars (loss, gradient norm, loss parts), copied to the host as soon as the step
    is queued, and the step's end on `clock`. Reading them waits for that copy only; an .item()
    issued later would queue behind the next step too, and the GPU would idle while the CPU logs."""

    def __init__(self, values: dict[str, torch.Tensor], clock: _StepClock):
        self.names = list(values)
        # FSDP's gradient norm is a DTensor: its full value is what the log shows.
        plain = [v.full_tensor() if hasattr(v, "full_tensor") else torch.as_tensor(v) for v in values.values()]
        stacked = torch.stack([v.detach().float().reshape(()) for v in plain])
        if stacked.is_cuda:
            stacked = stacked.to("cpu", non_blocking=True)  # into pinned memory: the copy runs on the GPU's queue
        self.finished = clock.mark()  # on a GPU, also what read() waits for
        self.host = stacked

    def read(self) -> dict[str, float]:
        if isinstance(self.finished, torch.cuda.Event):
            self.finished.synchronize()
        return dict(zip(self.names, self.host.tolist()))


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pinned host memory lets the copy to the GPU overlap the running step."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _save(out_dir, step, model, optimizers, print_, tc: TrainConfig, world) -> None:
    model_state, optimizer_states = distributed.full_state(model, optimizers, world)  # every rank takes part
    if world.main:
        ckpt.save(out_dir, step, model, model_state, optimizer_states, print_, tc.keep_checkpoints)
    distributed.barrier(world)


def _truncate_metrics(path: Path, start: int) -> None:
    """On resume, drop the lines past the checkpoint: the resumed run writes them again."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and json.loads(line)["step"] <= start]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def _tensorboard(out_dir: Path, tc: TrainConfig):
    if not tc.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warn("tensorboard is not installed: metrics go to metrics.jsonl only (pip install tensorboard)")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
