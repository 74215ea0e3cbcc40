"""What the hardware can do: bf16 dense peak FLOP/s for MFU, and whether a training config fits in
the GPU's memory (checked before any weight is moved there)."""

from __future__ import annotations

import torch

# Dense bf16 tensor-core peaks, in FLOP/s (vendor datasheets, without sparsity).
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165.2e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def training_bytes(parameters: int, micro_batch: int, seq_len: int, hidden: int, layers: int, vocab: int,
                   trainable: int | None = None) -> int:
    """A rough upper estimate: fp32 weights (4 bytes per parameter), a gradient and two AdamW
    moments for each trained one (12 bytes; all of them unless `trainable` says fewer, as under
    LoRA), plus bf16 activations (34·s·b·h bytes per layer, Korthikanti et al. 2022, no
    recomputation; their 5·a·s²·b term for the attention matrix is left out because the fused
    attention kernels used on GPUs never hold it) and the fp32 logits twice over. At the
    GPT-2-124M shape with micro-batch 32 this says 24 GiB where the H100 measured 15."""
    activations = layers * 34 * seq_len * micro_batch * hidden
    logits = 2 * 4 * micro_batch * seq_len * vocab
    return 4 * parameters + 12 * (parameters if trainable is None else trainable) + activations + logits


def check_fits(need: int, device: torch.device) -> None:
    if device.type != "cuda":
        return
    free, total = torch.cuda.mem_get_info(device)
    if need > free:
        raise MemoryError(
            f"this config needs about {need / 2**30:.1f} GiB on the GPU, which has {free / 2**30:.1f} of {total / 2**30:.1f} GiB free: "
            "lower train.micro_batch_size (gradient accumulation keeps the batch) or model.max_seq_len"
        )
