"""How many cells of an experiment run at once on one GPU when the experiment file does not say
(`parallel`): as many as the GPU's free memory holds, each cell costing its training state and
activations plus a process's CUDA context, at most one per CPU core (a worker's Python feeds its
GPU kernels from one core), and at most MAX_DEFAULT. On CPUs, one.
"""

from __future__ import annotations

import os

from ltm.config import RunConfig

MAX_DEFAULT = 12  # the Study-1 grid (3 seeds x 4 regimes) in one wave; past it, small models' processes mostly wait on each other
PROCESS_BYTES = 2 * 2**30  # a CUDA context, the caching allocator's slack, compilation's workspaces
TRAIN_STATE_BYTES = 16  # per parameter: fp32 weights, gradients and AdamW's two moments


def model_parameters(config: RunConfig) -> int:
    m = config.model
    kv = m.d_model * m.n_kv_heads // m.n_heads
    per_layer = 2 * m.d_model * m.d_model + 2 * m.d_model * kv + 3 * m.d_model * m.ffn_width
    return m.n_layers * per_layer + config.build.vocab_size * m.d_model * (1 if m.tie_embeddings else 2)


def cell_bytes(config: RunConfig) -> int:
    """GPU memory one cell's training needs, roughly: its state, its activations (34 bytes per token,
    layer and width in 16-bit, Korthikanti et al. 2022, plus the attention scores) and the fp32
    logits with their gradient."""
    m, t = config.model, config.train
    tokens = (t.micro_batch_size or t.batch_size) * m.max_seq_len
    activations = tokens * m.n_layers * (34 * m.d_model + 5 * m.n_heads * m.max_seq_len) + tokens * config.build.vocab_size * 8
    return TRAIN_STATE_BYTES * model_parameters(config) + activations


def default_parallel(configs: list[RunConfig], free_bytes: int | None, cores: int | None = None) -> int:
    """Cells at once per GPU for these cells (the largest decides), given the GPU's free memory (None: no GPU)."""
    if free_bytes is None or not configs:
        return 1
    cores = cores or os.cpu_count() or 2
    fits = free_bytes // (max(cell_bytes(c) for c in configs) + PROCESS_BYTES)
    return int(max(1, min(fits, cores, MAX_DEFAULT)))


def free_gpu_bytes() -> int | None:
    """Free memory of the visible GPU that has least (cells are spread over all), None without one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
