"""What a training run records as it goes: one line per step in OUT/metrics.jsonl (step, loss, lr,
grad_norm, tokens, tokens_per_s, elapsed_s, mfu on GPUs, loss parts, heldout_loss), the same
scalars to the metric logger (ltm.train.loggers), and the progress bar.

The GPU never waits for the log: a step's scalars are copied to the host right behind the step
(_HostScalars) and written once the next step is queued; its time is the step's end on the device
(_StepClock), not the moment its line is written.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ltm.log import progress
from ltm.train import distributed
from ltm.train.loggers import MetricLogger


class StepClock:
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


class HostScalars:
    """A step's scalars (loss, gradient norm, loss parts), copied to the host as soon as the step
    is queued, and the step's end on `clock`. Reading them waits for that copy only; an .item()
    issued later would queue behind the next step too, and the GPU would idle while the CPU logs."""

    def __init__(self, values: dict[str, torch.Tensor], clock: StepClock):
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


class Recorder:
    """The metrics file, the logger and the progress bar of one run; only rank 0 writes."""

    def __init__(self, out_dir: Path, world, start: int, steps: int, tokens_per_step: int, flops_per_token: float,
                 peak_flops: float | None, logger: str, run_name: str, config: dict):
        self.world, self.start, self.tokens_per_step = world, start, tokens_per_step
        self.flops_per_token, self.peak = flops_per_token, peak_flops
        self.clock = StepClock(world.device)
        self.started, self.timed_from, self.timed_steps = time.perf_counter(), None, 0
        self.file = self.logger = None
        self.bar = progress() if world.main else nullcontext()
        if world.main:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / "metrics.jsonl"
            _truncate(path, start)
            self.file = open(path, "a", encoding="utf-8")
            self.logger = MetricLogger(logger, out_dir, run_name, config)
        self.steps = steps
        self.task = None

    def __enter__(self) -> "Recorder":
        self.bar.__enter__()
        if self.world.main:
            self.task = self.bar.add_task("train", total=self.steps, completed=self.start, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def scalars(self, values: dict[str, torch.Tensor]) -> HostScalars:
        return HostScalars(values, self.clock)

    def write(self, step: int, lr: float, scalars: HostScalars, heldout: float | None = None) -> None:
        """The record of step `step` (0-based); `heldout` the held-out loss measured after it."""
        values = scalars.read()  # waits for this step on the GPU, not for the one queued after it
        loss, grad_norm = distributed.mean(values.pop("loss"), self.world), values.pop("grad_norm")
        now = self.clock.seconds(scalars.finished)  # when the step ended, not when its record is written
        if step == self.start:  # the first step includes compilation: the speed is timed from its end
            self.timed_from, tokens_per_s = now, self.tokens_per_step / max(now - self.started, 1e-9)
        else:
            self.timed_steps += 1
            tokens_per_s = self.tokens_per_step * self.timed_steps / max(now - self.timed_from, 1e-9)
        record = {"step": step + 1, "loss": round(loss, 5), "lr": lr, "grad_norm": round(grad_norm, 4),
                  "tokens": (step + 1) * self.tokens_per_step, "tokens_per_s": round(tokens_per_s, 1),
                  "elapsed_s": round(now - self.started, 3)}
        if self.peak:
            record["mfu"] = round(self.flops_per_token * tokens_per_s / (self.peak * self.world.size), 4)
        if len(values) > 1:
            record |= {f"loss_{k}": round(distributed.mean(v, self.world), 5) for k, v in values.items()}
        if heldout is not None:
            record["heldout_loss"] = round(heldout, 5)
        if not self.world.main:
            return
        self._line(record)
        self.logger.log({k: v for k, v in record.items() if k not in ("step", "tokens") and v is not None}, step + 1)
        shown = f"loss {record['loss']:.3f}  {tokens_per_s:,.0f} tok/s" + (f"  MFU {record['mfu']:.1%}" if self.peak else "")
        if heldout is not None:
            shown += f"  held-out {heldout:.3f}"
        self.bar.update(self.task, advance=1, info=shown)

    def write_start(self, heldout: float) -> None:
        """Step 0: the held-out loss before the first step (what a final stage starts from)."""
        if self.world.main:
            self._line({"step": 0, "tokens": 0, "heldout_loss": round(heldout, 5)})

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def close(self) -> None:
        if self.world.main:
            self.file.close()
            self.logger.close()

    def _line(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def _truncate(path: Path, start: int) -> None:
    """On resume, drop the lines past the checkpoint: the resumed run writes them again."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and json.loads(line)["step"] <= start]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
