"""Several processes under torchrun: DDP or FSDP2, the device of each rank, and averaging a number
across ranks. A single process (plain `ltm train`) goes through the same calls as a world of one."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ltm.model.factory import pick_device


@dataclass
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> World:
    """Read torchrun's environment; start the process group (NCCL on GPUs, Gloo on CPUs)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    here = pick_device(device, local_rank)
    use_cuda = here.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=here if use_cuda else None)
    return World(rank, size, local_rank, here)


def wrap(model: torch.nn.Module, world: World, strategy: str) -> torch.nn.Module:
    """DDP: a full copy per rank, gradients averaged. FSDP2: parameters sharded per decoder layer."""
    if world.size == 1:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)


def full_state(model: torch.nn.Module, optimizers: list, world: World) -> tuple[dict, list[dict]]:
    """The model's and optimizers' full states; under FSDP2 the shards are gathered (every rank
    must call this), otherwise they are the plain state dicts."""
    if world.size > 1 and is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(model, options=options),
                [get_optimizer_state_dict(model, o, options=options) for o in optimizers])
    return model.state_dict(), [o.state_dict() for o in optimizers]


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP2 shards the model's parameters (DTensors) in this world."""
    return any(hasattr(p, "device_mesh") for p in model.parameters())


def save_sharded(folder: Path, model: torch.nn.Module, optimizers: list) -> None:
    """The model's and optimizers' states through torch.distributed.checkpoint: every rank writes
    its own shards into `folder` (on storage every node sees), nothing is gathered. Every rank calls this."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizers)
    dcp.save({"model": model_state, "optimizers": optimizer_state}, checkpoint_id=str(folder), no_dist=not dist.is_initialized())


def load_sharded(folder: Path, model: torch.nn.Module, optimizers: list) -> None:
    """Load a save_sharded checkpoint into this world's model and optimizers, resharded to however
    many processes (one included, unwrapped) run now."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizers)
    state = {"model": model_state, "optimizers": optimizer_state}
    with warnings.catch_warnings():  # loading into one process is meant here, not a fallback to warn about
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(folder), no_dist=not dist.is_initialized())
    set_state_dict(model, optimizers, model_state_dict=state["model"], optim_state_dict=state["optimizers"])


def shared_path(path: Path | None, world: World) -> Path:
    """Rank 0's `path` on every rank (a temporary folder it made)."""
    if world.size == 1:
        return path
    sent = [str(path) if world.main else None]
    dist.broadcast_object_list(sent, src=0)
    return Path(sent[0])


def load_optimizer_states(model: torch.nn.Module, optimizers: list, states: list[dict], world: World) -> None:
    if world.size > 1 and is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        for optimizer, state in zip(optimizers, states):
            set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    for optimizer, state in zip(optimizers, states):
        optimizer.load_state_dict(state)


def mean(value: float, world: World) -> float:
    if world.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return tensor.item() / world.size


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def teardown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
