"""Sharding-aware checkpoints: torch.distributed.checkpoint for model and optimizer shards.

A checkpoint is a folder `step-<N>/` holding DCP shards, each rank's RNG state and `meta.json`
(step, epoch, loop counters, config fingerprint, and the SHA-256 of every other file in the
folder). It is written under a temporary name, `meta.json` last, and renamed in by rank 0
(recsys.atomic.replace_folder) only once every rank has finished, so a run killed mid-save never
leaves a checkpoint that looks complete.

The best validation epoch is part of the loop state (`best_step`: the step of its checkpoint), so
a checkpoint and the best-epoch marker it carries are written in one atomic step. The newest two
checkpoints are kept, and every checkpoint one of them names as best; old ones are removed as a
whole (recsys.atomic.remove_folder).

Loading verifies every file against meta.json before reading any, and reads DCP's pickled
`.metadata` through a restricted unpickler (recsys.train.dcp_reader). `resume` falls back to the
previous checkpoint when the newest is corrupt, and says so; a checkpoint written by another
config or process count is refused.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import CheckpointException
from torchrec.optim.keyed import KeyedOptimizer

from recsys.atomic import remove_folder, replace_folder, write_text
from recsys.errors import CheckpointError
from recsys.integrity import field, first_line, load_tensors, read_json, sha256, verify
from recsys.train.dcp_reader import SafeFileSystemReader, read_metadata

KEEP = 2  # newest checkpoints kept per run
META = "meta.json"


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
    best_step: int = 0  # the step of the best epoch's checkpoint (0: none yet)


class CorruptCheckpoint(CheckpointError):
    """A checkpoint's files are missing, modified or unreadable (an older checkpoint may still do)."""


def save(folder: Path, state: LoopState, model: nn.Module, optimizer: KeyedOptimizer, fingerprint: str) -> Path:
    """Write a checkpoint of the current step into `folder`; every rank must call it."""
    final = folder / f"step-{state.step:08d}"
    tmp = folder / f".tmp-{final.name}"
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    _write_shards(tmp, {"model": model.state_dict(), "optim": optimizer.state_dict()})
    _write_rng(tmp / f"rng-{rank}.pt")
    dist.barrier()
    if rank == 0:
        files = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
        meta = {"fingerprint": fingerprint, "world_size": dist.get_world_size(), "loop": asdict(state),
                "files": files}
        write_text(tmp / META, json.dumps(meta, indent=1))
        replace_folder(tmp, final)
        _prune(folder)
    dist.barrier()
    return final


def _write_shards(folder: Path, state: dict[str, Any]) -> None:
    try:
        dcp.save(state, checkpoint_id=str(folder))
    except CheckpointException as e:  # DCP wraps whatever stopped a rank, a Ctrl-C or a full disk too
        raise _cause(e) from e


def _write_rng(path: Path) -> None:
    torch.save(torch.get_rng_state(), path)


def _prune(folder: Path) -> None:
    """Remove all but the newest KEEP checkpoints and the best ones they name, and debris of kills."""
    done = checkpoints(folder)
    keep = set(done[-KEEP:])
    for path in done[-KEEP:]:
        try:
            keep.add(folder / f"step-{_loop(path).best_step:08d}")
        except CheckpointError:
            pass  # a corrupt checkpoint names nothing worth keeping
    for old in done:
        if old not in keep:
            remove_folder(old)
    for debris in [*folder.glob(".tmp-step-*"), *folder.glob(".step-*.deleted")]:
        shutil.rmtree(debris, ignore_errors=True)


def checkpoints(folder: Path) -> list[Path]:
    """Every checkpoint folder in `folder`, oldest first."""
    return sorted(p for p in folder.glob("step-*") if p.is_dir())


def best(folder: Path, state: LoopState) -> Path:
    """The checkpoint of `state`'s best epoch."""
    return folder / f"step-{state.best_step:08d}"


def clear(folder: Path) -> None:
    """Remove every checkpoint of `folder` at once (a fresh start); every rank must call it."""
    if dist.get_rank() == 0:
        remove_folder(folder)
    dist.barrier()


def resume(folder: Path, model: nn.Module, optimizer: KeyedOptimizer, fingerprint: str) -> LoopState | None:
    """Load the newest checkpoint in `folder` that is intact, warning about each corrupt one skipped;
    None if there is none. CheckpointError naming the bad file if none of them is intact."""
    found = checkpoints(folder)
    bad: list[CorruptCheckpoint] = []
    for path in reversed(found):
        try:
            state = load(path, model, optimizer, fingerprint)
        except CorruptCheckpoint as e:
            bad.append(e)
            continue
        for skipped in bad:
            warn(f"{skipped}; resuming from the previous checkpoint, {path.name}")
        return state
    if bad:
        raise CheckpointError(f"{bad[0]}; no earlier checkpoint is intact (rerun with --fresh to start over)")
    return None


def load(path: Path, model: nn.Module, optimizer: KeyedOptimizer, fingerprint: str) -> LoopState:
    """Restore model, optimizer and RNG from `path`; returns the loop state to continue from.
    CorruptCheckpoint if a file is missing, modified or unreadable (checked before any is read)."""
    problem = _agreed(_problem(path) if dist.get_rank() == 0 else None)
    if problem is not None:
        raise CorruptCheckpoint(problem)
    meta = read_json(path / META)
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{path}: written by a different config (model, data or optimizer settings "
                              "changed); start a new run name or delete the checkpoint")
    if meta.get("world_size") != dist.get_world_size():
        raise CheckpointError(f"{path}: written by {meta.get('world_size')} processes, this run has "
                              f"{dist.get_world_size()}; the batch order depends on it, so resume with as many")
    optimizer.init_state()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    try:
        dcp.load(state, storage_reader=SafeFileSystemReader(path))
    except (Exception, CheckpointException) as e:  # CheckpointException is a BaseException
        raise CorruptCheckpoint(f"{path}: its files match their checksums but do not load "
                                f"({_reason(e)})") from None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optim"])
    rng = path / f"rng-{dist.get_rank()}.pt"
    if rng.exists():
        torch.set_rng_state(load_tensors(rng, torch.Tensor))
    return _loop(path)


def _problem(path: Path) -> str | None:
    """What is wrong with the files of checkpoint `path`, or None: every file is checked against
    the checksums in meta.json, and `.metadata` is unpickled the restricted way."""
    if not path.is_dir():
        return f"{path}: missing"
    try:
        files = field(read_json(path / META), "files", dict, path / META)
        on_disk = {p.name for p in path.iterdir()} - {META}
        missing, extra = sorted(set(files) - on_disk), sorted(on_disk - set(files))
        if missing:
            raise CheckpointError(f"{path / missing[0]}: missing")
        if extra:
            raise CheckpointError(f"{path / extra[0]}: not written with the checkpoint; refused")
        for name, digest in sorted(files.items()):
            verify(path / name, digest)
        read_metadata(path / ".metadata")
        for rng in path.glob("rng-*.pt"):
            load_tensors(rng, torch.Tensor)
        _loop(path)
    except CheckpointError as e:
        return str(e)
    except OSError as e:
        return f"{path}: cannot read ({first_line(e)})"
    return None


def _agreed(problem: str | None) -> str | None:
    """Rank 0's verdict, on every rank (so all ranks fall back, or load, together)."""
    box = [problem]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    return box[0]


def _loop(path: Path) -> LoopState:
    meta = read_json(path / META)
    loop = field(meta, "loop", dict, path / META)
    names = {f.name for f in fields(LoopState)}
    if not set(loop) <= names or not all(isinstance(v, (int, float)) for v in loop.values()):
        raise CheckpointError(f"{path / META}: 'loop' is not a training loop state")
    return LoopState(**loop)


def _cause(e: CheckpointException) -> BaseException:
    """The exception that failed the first failing rank (DCP records one per rank)."""
    return next(iter(e.failures.values()))[0] if e.failures else e


def _reason(e: BaseException) -> str:
    if isinstance(e, CheckpointException):
        e = _cause(e)
    return f"{type(e).__name__}: {first_line(e)}"


def warn(message: str) -> None:
    """One line on stderr, from rank 0."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(f"warning: {message}", file=sys.stderr)
