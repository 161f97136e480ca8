"""The training loop: sharded model, fused sparse + Adam dense optimizers, checkpoints, per-epoch metrics.

The dense learning rate follows `optim.schedule` by optimizer step and the dense gradients are
clipped to `optim.clip_grad_norm` (when set); the fused sparse optimizer keeps `lr_sparse`.

One loop for every model and every process count. Each epoch ends with validation metrics
appended to `<out>/metrics.jsonl` and a checkpoint; `checkpoint_every` adds mid-epoch ones.
The test split is scored with the best validation epoch's weights (unless `select_best` is off);
`patience` stops training early.
A resumed run skips the batches its checkpoint had consumed and ends with the same numbers as
an uninterrupted run; a fresh one (`resume=False`) first removes the old checkpoints, which would
otherwise outrank (and prune) its own.
The loss is checked for NaN/inf every CHECK_EVERY steps and before each checkpoint (one device
sync and one tiny all-reduce per check, not one per step): a diverged model is one Diverged line
naming the model, the step and the learning rates to lower.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

from recsys.atomic import write_text
from recsys.data.dataset import ClickDataset
from recsys.errors import CheckpointError, DataError, UserError
from recsys.integrity import first_line
from recsys.progress import bar
from recsys.train import checkpoint
from recsys.train.checkpoint import LoopState
from recsys.train.config import OptimConfig, TrainConfig
from recsys.train.distributed import DistEnv
from recsys.train.sharding import dense_parameters, placements, shard
from recsys.train.tasks import Task

CHECK_EVERY = 50  # steps between checks that the loss is finite


class Diverged(UserError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    model: DistributedModelParallel
    history: list[dict] = field(default_factory=list)  # one record per epoch
    test: dict[str, float] = field(default_factory=dict)
    placements: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    tested_epoch: int = 0  # whose weights the test metrics (and the exported model) are


def build_optimizer(dmp: DistributedModelParallel, lr_dense: float) -> CombinedOptimizer:
    """The fused sparse optimizer, then Adam over the dense parameters (set_dense_lr relies on this order)."""
    dense = KeyedOptimizerWrapper(dense_parameters(dmp), lambda ps: torch.optim.Adam(ps, lr=lr_dense))
    return CombinedOptimizer([dmp.fused_optimizer, dense])


def set_dense_lr(opt: CombinedOptimizer, lr: float) -> None:
    """Set the learning rate of `opt`'s dense optimizer (the fused sparse one keeps its own)."""
    _, dense = opt.optimizers[-1]
    for group in dense.param_groups:
        group["lr"] = lr


def train(task: Task, dataset: ClickDataset, optim: OptimConfig, config: TrainConfig, env: DistEnv,
          out: Path, fingerprint: str, seed: int, resume: bool = True, optim_key: str = "") -> TrainResult:
    """Train `task`'s model, validating each epoch; returns the model, history and test metrics.
    `optim_key`: the config table of `optim`, named when the loss diverges (default <task>.optim)."""
    torch.manual_seed(seed * 1000 + env.rank)
    dmp = shard(task.build(torch.device("meta")), env, config.sharding, optim.lr_sparse)
    opt = build_optimizer(dmp, optim.lr_dense)
    ckpt_dir = out / "checkpoints"
    if not resume:
        checkpoint.clear(ckpt_dir)
    state = checkpoint.resume(ckpt_dir, dmp, opt, fingerprint) or LoopState()
    history = _read_history(out, state.epoch)
    for epoch in range(state.epoch, optim.epochs):
        if config.patience and epoch - state.best_epoch >= config.patience:
            break
        state = _train_epoch(task, dataset, dmp, opt, optim, config, env, state, ckpt_dir, fingerprint,
                             optim_key or f"{task.name}.optim")
        record = _epoch_record(task, dmp, state, epoch, config.eval_batch_size)
        history.append(record)
        if env.is_main:
            _write_history(out, history)
        metric = record[f"val_{task.primary}"]
        improved = metric > state.best_metric
        state = LoopState(epoch=epoch + 1, step=state.step, best_metric=max(metric, state.best_metric),
                          best_epoch=epoch + 1 if improved else state.best_epoch,
                          best_step=state.step if improved else state.best_step)
        checkpoint.save(ckpt_dir, state, dmp, opt, fingerprint)  # the best-epoch marker travels inside
    tested = state.epoch
    if config.select_best and state.best_epoch and state.best_epoch != state.epoch:
        tested = _restore_best(ckpt_dir, state, dmp, opt, fingerprint)
    test = task.evaluate(dmp, "test", config.eval_batch_size)
    return TrainResult(dmp, history, test, placements(dmp.plan), tested)


def _restore_best(ckpt_dir: Path, state: LoopState, dmp: DistributedModelParallel, opt: CombinedOptimizer,
                  fingerprint: str) -> int:
    """Load the best epoch's checkpoint; returns the epoch whose weights the model now holds. If that
    checkpoint is gone or corrupt, says so and keeps (reloads) the last epoch's weights."""
    try:
        checkpoint.load(checkpoint.best(ckpt_dir, state), dmp, opt, fingerprint)
        return state.best_epoch
    except checkpoint.CorruptCheckpoint as e:
        checkpoint.warn(f"{e}; the best epoch ({state.best_epoch}) cannot be restored, so the last "
                        f"({state.epoch}) is tested and exported")
    checkpoint.load(ckpt_dir / f"step-{state.step:08d}", dmp, opt, fingerprint)
    return state.epoch


def _train_epoch(task: Task, dataset: ClickDataset, dmp: DistributedModelParallel, opt: CombinedOptimizer,
                 optim: OptimConfig, config: TrainConfig, env: DistEnv, state: LoopState,
                 ckpt_dir: Path, fingerprint: str, optim_key: str) -> LoopState:
    global_batch = optim.batch_size * env.world_size
    total = None if task.positives_only else dataset.num_rows("train") // global_batch * global_batch
    progress = bar(total, f"{task.name} epoch {state.epoch + 1}/{optim.epochs}", enabled=env.is_main,
                   unit="sample")
    progress.update(state.batch * global_batch)
    batches = dataset.batches("train", optim.batch_size, epoch=state.epoch, shuffle=True, rank=env.rank,
                              world_size=env.world_size, drop_last=True, positives_only=task.positives_only)
    start = time.perf_counter()
    dense = list(dense_parameters(dmp).values())
    losses: list[torch.Tensor] = []  # since the last check, on the device
    for i, batch in enumerate(batches):
        if i < state.batch:
            continue
        loss, _ = dmp(batch)
        loss.backward()
        if optim.clip_grad_norm is not None:  # dense grads are already all-reduced: every rank clips alike
            torch.nn.utils.clip_grad_norm_(dense, optim.clip_grad_norm)
        set_dense_lr(opt, optim.dense_lr(state.step))  # a function of the step: a resumed run stays on the curve
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
        state.batch, state.step = i + 1, state.step + 1
        state.samples += global_batch
        progress.update(global_batch)
        due = bool(config.checkpoint_every) and state.step % config.checkpoint_every == 0
        if due or len(losses) == CHECK_EVERY:
            _count_losses(losses, state, task.name, optim_key, env.device)
            losses = []
            progress.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}")
        if due:
            state.seconds += time.perf_counter() - start
            checkpoint.save(ckpt_dir, state, dmp, opt, fingerprint)
            start = time.perf_counter()
    _count_losses(losses, state, task.name, optim_key, env.device)
    progress.close()
    state.seconds += time.perf_counter() - start
    if state.loss_count == 0:
        raise DataError(f"train split gives no full batch of {global_batch} rows; lower {task.name}.optim.batch_size")
    return state


def _count_losses(losses: list[torch.Tensor], state: LoopState, name: str, optim_key: str,
                  device: torch.device) -> None:
    """Add the losses of the steps since the last check to `state` (one device sync); Diverged, on
    every rank, if one of them on any rank is NaN or infinite. `state.step` is the last one's step."""
    values = torch.stack(losses).double().tolist() if losses else []
    bad = next((k for k, v in enumerate(values) if not math.isfinite(v)), None)
    first = state.step - len(values) + bad + 1 if bad is not None else math.inf
    found = [torch.zeros(2, dtype=torch.float64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(found, torch.tensor([first, values[bad] if bad is not None else 0.0], dtype=torch.float64,
                                        device=device))
    step, value = min(tuple(t.tolist()) for t in found)
    if math.isfinite(step):
        raise Diverged(f"{name}: loss is {value} at step {int(step)} (epoch {state.epoch + 1}); "
                       f"lower {optim_key}.lr_dense or lr_sparse")
    for v in values:
        state.loss_sum += v
    state.loss_count += len(values)


def _epoch_record(task: Task, dmp: DistributedModelParallel, state: LoopState, epoch: int,
                  eval_batch_size: int) -> dict:
    sums = torch.tensor([state.loss_sum, float(state.loss_count)], dtype=torch.float64)
    dist.all_reduce(sums)
    record = {"epoch": epoch + 1, "step": state.step, "train_loss": float(sums[0] / sums[1]),
              "samples_per_s": state.samples / max(state.seconds, 1e-9)}
    record.update({f"val_{k}": v for k, v in task.evaluate(dmp, "val", eval_batch_size).items()})
    return record


def _read_history(out: Path, epochs: int) -> list[dict]:
    """The records of the first `epochs` epochs (written before their checkpoints, so all there);
    CheckpointError naming metrics.jsonl if it is unreadable or short."""
    path = out / "metrics.jsonl"
    if epochs == 0:
        return []
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:epochs]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable ({first_line(e)}); rerun with --fresh to start over") from None
    if len(records) < epochs or not all(isinstance(r, dict) for r in records):
        raise CheckpointError(f"{path}: holds {len(records)} epoch records, the checkpoint is at epoch {epochs}; "
                              "rerun with --fresh to start over")
    return records


def _write_history(out: Path, history: list[dict]) -> None:
    write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
