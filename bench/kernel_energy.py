"""Energy per unit of work of the kinds of kernels a GPT-2-124M training step runs (its matrix
products in bf16 and FP8, elementwise passes, attention), each repeated for about two seconds on
one GPU. A GPU held at its power limit trains as fast as its energy per token allows, so these
figures say which changes can pay: a kernel that is faster but spends as much energy is not.

    python bench/kernel_energy.py          (needs a CUDA GPU and nvidia-ml-py; see bench/power.py)

Prints, per kernel: ms per call, mJ per call, mean W, and pJ per FLOP (products, attention) or
per byte moved (elementwise). Inputs are random, as in train_throughput.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402
from power import PowerLog  # noqa: E402

TOKENS = 32 * 1024  # one micro-batch of the gpt2-124m preset


def measure(spans: list, name: str, fn, work: float, unit: str, seconds: float = 2.0) -> None:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.3:  # about how long one call takes
        fn()
        calls += 1
    torch.cuda.synchronize()
    reps = max(10, int(seconds * calls / (time.perf_counter() - start)))
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    spans.append((name, start, time.perf_counter(), reps, work, unit))


def main() -> None:
    device = torch.device("cuda")
    power = PowerLog.open(device)
    if power is None:
        sys.exit("skipped: needs a CUDA GPU and the nvidia-ml-py package")
    spans: list = []
    time.sleep(1.0)
    spans.append(("idle", time.perf_counter(), time.perf_counter() + 2.0, 1, None, None))
    time.sleep(2.1)
    one = torch.ones((), device=device)
    for k, n in ((768, 768), (768, 2048), (2048, 768), (768, 50304)):
        a, w = torch.randn(TOKENS, k, device=device, dtype=torch.bfloat16), torch.randn(n, k, device=device, dtype=torch.bfloat16)
        measure(spans, f"bf16 product {TOKENS}x{k}x{n}", lambda: torch.mm(a, w.t()), 2 * TOKENS * k * n, "flop")
        a8, w8 = a.to(torch.float8_e4m3fn), w.to(torch.float8_e4m3fn)
        measure(spans, f"fp8 product {TOKENS}x{k}x{n}",
                lambda: torch._scaled_mm(a8, w8.t(), one, one, out_dtype=torch.bfloat16), 2 * TOKENS * k * n, "flop")
    gate = torch.randn(TOKENS, 2048, device=device, dtype=torch.bfloat16)
    up = torch.randn_like(gate)
    swiglu = torch.compile(lambda g, u: F.silu(g) * u)
    measure(spans, f"SwiGLU, compiled [{TOKENS},2048]", lambda: swiglu(gate, up), 3 * gate.numel() * 2, "byte")
    x, scale = torch.randn(TOKENS, 768, device=device, dtype=torch.bfloat16), torch.ones(768, device=device)
    norm = torch.compile(lambda x, w: (F.rms_norm(x.float(), (768,)) * w).to(torch.bfloat16))
    measure(spans, f"RMSNorm, compiled [{TOKENS},768]", lambda: norm(x, scale), 2 * x.numel() * 2, "byte")
    source = torch.empty(512 * 2**20, device=device, dtype=torch.uint8)
    target = torch.empty_like(source)
    measure(spans, "copy of 512 MiB", lambda: target.copy_(source), 2 * source.numel(), "byte")
    q, k, v = (torch.randn(32, 12, 1024, 64, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    grad_out = torch.randn_like(q)

    def attention():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.autograd.grad(out, (q, k, v), grad_out)

    # Causal: half of the 4·T²·d forward FLOPs per head; the backward pass does 2.5 times the forward's.
    measure(spans, "attention (SDPA, causal) forward+backward [32,12,1024,64]", attention,
            3.5 * 2 * 32 * 12 * 1024 * 1024 * 64, "flop")
    power.close()
    for name, start, end, reps, work, unit in spans:
        used = power.between(start, end)
        if used is None:
            continue
        seconds = (end - start) / reps
        extra = {"kernel": name, "sm_clock_mhz": round(used["sm_clock_mhz"])}
        emit("kernel_energy", "power", used["power_w"], "W", **extra)
        if work is None:
            continue
        joules = used["power_w"] * seconds
        emit("kernel_energy", "time_per_call", seconds * 1e3, "ms", **extra)
        emit("kernel_energy", "energy_per_call", joules * 1e3, "mJ", **extra)
        emit("kernel_energy", f"energy_per_{unit}", joules / work * 1e12, f"pJ/{unit}", **extra)


if __name__ == "__main__":
    main()
