"""Multi-process training under ``torchrun``: the process group, each rank's device, the DDP
wrapper and the collective stop decision.  Without torchrun every function is the one-process case."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

# How often (in steps) the ranks agree on whether to stop.  An all-reduce per step would be a
# synchronisation point of its own; a stop asked for by a signal or a time limit waits at most this.
STOP_CHECK_EVERY = 10


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend_for(device: torch.device) -> str:
    """nccl only moves CUDA tensors; gloo serves CPU ranks."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: str) -> torch.device:
    """This process's device: ``cuda`` becomes cuda:LOCAL_RANK (one GPU per process on a node)."""
    dev = torch.device(device)
    if dev.type == "cuda" and launched_by_torchrun():
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def setup_distributed(device: str = "cpu") -> torch.device:
    """Pick this rank's device (``torch.cuda.set_device`` on CUDA, so collectives and caches use
    it) and, under torchrun, join the process group with the backend that device needs."""
    dev = rank_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if launched_by_torchrun() and not is_distributed():
        dist.init_process_group(backend=backend_for(dev))
    return dev


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` when distributed (pinned to this rank's GPU on CUDA)."""
    if not is_distributed():
        return module
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(module, device_ids=[device.index], output_device=device.index)
    return nn.parallel.DistributedDataParallel(module)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a collective: all ranks must call it)."""
    if not is_distributed():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def should_check_stop(step: int) -> bool:
    """Whether the ranks agree on stopping after ``step``: every step alone, every
    ``STOP_CHECK_EVERY`` steps under DDP (the same steps on every rank, as the step count is shared)."""
    return not is_distributed() or step % STOP_CHECK_EVERY == 0


def teardown() -> None:
    """Leave the process group (at the end of a run, so NCCL does not warn of a leak)."""
    if is_distributed():
        dist.destroy_process_group()
