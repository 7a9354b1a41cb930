"""The processes of a run: one, or several under ``torchrun`` with DistributedDataParallel.

Taught in chapter 09. Under ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK set) every process draws
the same *global* batch of example indices from the seeded permutation, and the same global t and
eps, and keeps the slice ``[rank * b, (rank + 1) * b)`` with b = batch_size // world_size (a
contiguous split of each global batch, not torch's DistributedSampler, which interleaves). The
model is wrapped in DistributedDataParallel, which averages the gradients, so a step on W
processes is the step one process takes on the whole batch. Only rank 0 logs, saves and samples.
At every step boundary the processes agree on whether a signal asks them to stop
(:func:`agreed_signal`): one small all-reduce on the CPU, through a gloo group beside an nccl one,
so that it waits for no GPU work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from ..utils import device as pick_device

__all__ = ["Processes", "launched_by_torchrun", "setup_processes", "wrap_model", "agreed_signal"]


def launched_by_torchrun() -> bool:
    """True when this process is one of several that ``torchrun`` started."""
    return (
        all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        and int(os.environ["WORLD_SIZE"]) > 1
    )


@dataclass
class Processes:
    """This process's place in the run: its rank among ``world_size``, its device, and whether it
    created the process group (and so must destroy it); ``cpu_group``: the group for small
    collectives on the CPU (gloo; None: the default group, itself gloo)."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False
    cpu_group: Any = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self):
        """Leave the process group if this process created it."""
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def setup_processes(device: str = "auto") -> Processes:
    """The device (``"auto"``: ddpm_lib.device()'s rule) and, under torchrun or an initialised
    process group, the rank and world size (joining the group with nccl on CUDA, gloo otherwise).
    On CUDA, TF32 matrix products are switched on, as the GPU runs of the course were made."""
    dev = pick_device(device)
    procs = Processes(0, 1, dev)
    if dist.is_available() and (dist.is_initialized() or launched_by_torchrun()):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            procs.owns_group = True
        procs.rank, procs.world_size, procs.device = dist.get_rank(), dist.get_world_size(), dev
        if procs.distributed and "gloo" not in dist.get_backend():
            procs.cpu_group = dist.new_group(backend="gloo")  # every process creates it, in the same order
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return procs


def wrap_model(model: nn.Module, procs: Processes, compile: bool = False) -> nn.Module:
    """The module a training step calls: ``model`` in DistributedDataParallel when there are
    several processes, then ``torch.compile`` when asked."""
    net = model
    if procs.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(net, device_ids=[procs.device.index] if procs.device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    return net


def agreed_signal(procs: Processes, signum: int | None) -> int | None:
    """The signal this process received (None: none), or under DDP the largest that any process
    received, the same in every process (a collective: every process must call it, at the same step)."""
    if not procs.distributed:
        return signum
    flag = torch.tensor([signum or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=procs.cpu_group)
    return int(flag[0]) or None
