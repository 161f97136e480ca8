"""The process group a run trains in: torchrun's environment, or a single local process.

gloo on CPU, NCCL on CUDA. A single process still gets a (world size 1) process group, so
DistributedModelParallel, the planner and checkpoints take one code path for 1 or N processes.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def init_distributed(device: str = "auto") -> DistEnv:
    """Join torchrun's group (RANK/WORLD_SIZE set) or start a one-process group; idempotent."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    os.environ.setdefault("LOCAL_WORLD_SIZE", str(world))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    env = DistEnv(rank, world, local_rank, dev)
    if not dist.is_initialized():
        # torchrun's address from its environment; a one-process group's own, not left in the
        # environment (a process this one starts would inherit a port that is already taken)
        address = None if "MASTER_ADDR" in os.environ else f"tcp://127.0.0.1:{_free_port()}"
        dist.init_process_group(env.backend, init_method=address, rank=rank, world_size=world)
    return env


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
