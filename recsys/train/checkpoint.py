"""Sharding-aware checkpoints: torch.distributed.checkpoint for model and optimizer shards.

A checkpoint is a folder `step-<N>/` holding DCP shards, each rank's RNG state and `meta.json`
(step, epoch, loop counters, config fingerprint). The newest two are kept, and the one named in
`BEST` (the best validation epoch). It is written under a temporary name and renamed by
rank 0 (recsys.atomic.replace_folder) only once every rank has finished, so a run killed
mid-save never leaves a checkpoint that looks complete. Loading refuses a checkpoint written by
a different config.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torchrec.optim.keyed import KeyedOptimizer

from recsys.atomic import replace_folder, write_text
from recsys.errors import CheckpointError

KEEP = 2  # newest checkpoints kept per run


@dataclass
class LoopState:
    """Where the training loop stands: enough to continue exactly."""

    epoch: int = 0
    batch: int = 0  # batches of `epoch` already consumed
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    samples: int = 0
    seconds: float = 0.0
    best_metric: float = float("-inf")  # validation primary metric of the best epoch so far
    best_epoch: int = 0


def save(folder: Path, state: LoopState, model: nn.Module, optimizer: KeyedOptimizer, fingerprint: str) -> Path:
    """Write a checkpoint of the current step into `folder`; every rank must call it."""
    final = folder / f"step-{state.step:08d}"
    tmp = folder / f".tmp-step-{state.step:08d}"
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, checkpoint_id=str(tmp))
    torch.save(torch.get_rng_state(), tmp / f"rng-{rank}.pt")
    dist.barrier()
    if rank == 0:
        meta = {"fingerprint": fingerprint, "world_size": dist.get_world_size(), "loop": asdict(state)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        replace_folder(tmp, final)
        keep = best(folder)
        for old in sorted(folder.glob("step-*"))[:-KEEP]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def mark_best(path: Path) -> None:
    """Record `path` as its folder's best checkpoint (kept however old); rank 0 writes."""
    if dist.get_rank() == 0:
        write_text(path.parent / "BEST", path.name)
    dist.barrier()


def best(folder: Path) -> Path | None:
    marker = folder / "BEST"
    return folder / marker.read_text().strip() if marker.exists() else None


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder`, if any."""
    done = sorted(p for p in folder.glob("step-*") if (p / "meta.json").exists())
    return done[-1] if done else None


def load(path: Path, model: nn.Module, optimizer: KeyedOptimizer, fingerprint: str) -> LoopState:
    """Restore model, optimizer and RNG from `path`; returns the loop state to continue from."""
    meta = read_meta(path)
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{path}: written by a different config (model, data or optimizer settings "
                              "changed); start a new run name or delete the checkpoint")
    if meta.get("world_size") != dist.get_world_size():
        raise CheckpointError(f"{path}: written by {meta.get('world_size')} processes, this run has "
                              f"{dist.get_world_size()}; the batch order depends on it, so resume with as many")
    optimizer.init_state()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    try:
        dcp.load(state, checkpoint_id=str(path))
    except Exception as e:  # DCP raises many types for missing or mismatched shards
        raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optim"])
    rng = path / f"rng-{dist.get_rank()}.pt"
    if rng.exists():
        torch.set_rng_state(torch.load(rng, weights_only=True))
    return LoopState(**meta["loop"])


def read_meta(path: Path) -> dict:
    try:
        return json.loads((path / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / 'meta.json'}: unreadable checkpoint metadata ({e})") from None
