"""The training loop: sharded model, fused sparse + Adam dense optimizers, checkpoints, per-epoch metrics.

One loop for every model and every process count. Each epoch ends with validation metrics
appended to `<out>/metrics.jsonl` and a checkpoint; `checkpoint_every` adds mid-epoch ones.
The test split is scored with the best validation epoch's weights (unless `select_best` is off);
`patience` stops training early.
A resumed run skips the batches its checkpoint had consumed and ends with the same numbers as
an uninterrupted run.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

from recsys.atomic import write_text
from recsys.data.dataset import ClickDataset
from recsys.errors import CheckpointError, DataError
from recsys.progress import bar
from recsys.train import checkpoint
from recsys.train.checkpoint import LoopState
from recsys.train.config import OptimConfig, TrainConfig
from recsys.train.distributed import DistEnv
from recsys.train.sharding import dense_parameters, placements, shard
from recsys.train.tasks import Task


@dataclass
class TrainResult:
    model: DistributedModelParallel
    history: list[dict] = field(default_factory=list)  # one record per epoch
    test: dict[str, float] = field(default_factory=dict)
    placements: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    tested_epoch: int = 0  # whose weights the test metrics (and the exported model) are


def build_optimizer(dmp: DistributedModelParallel, lr_dense: float) -> CombinedOptimizer:
    dense = KeyedOptimizerWrapper(dense_parameters(dmp), lambda ps: torch.optim.Adam(ps, lr=lr_dense))
    return CombinedOptimizer([dmp.fused_optimizer, dense])


def train(task: Task, dataset: ClickDataset, optim: OptimConfig, config: TrainConfig, env: DistEnv,
          out: Path, fingerprint: str, seed: int, resume: bool = True) -> TrainResult:
    """Train `task`'s model, validating each epoch; returns the model, history and test metrics."""
    torch.manual_seed(seed * 1000 + env.rank)
    dmp = shard(task.build(torch.device("meta")), env, config.sharding, optim.lr_sparse)
    opt = build_optimizer(dmp, optim.lr_dense)
    ckpt_dir = out / "checkpoints"
    found = checkpoint.latest(ckpt_dir) if resume else None
    state = checkpoint.load(found, dmp, opt, fingerprint) if found else LoopState()
    history = _read_history(out, state.epoch)
    for epoch in range(state.epoch, optim.epochs):
        if config.patience and epoch - state.best_epoch >= config.patience:
            break
        state = _train_epoch(task, dataset, dmp, opt, optim, config, env, state, ckpt_dir, fingerprint)
        record = _epoch_record(task, dmp, state, epoch, config.eval_batch_size)
        history.append(record)
        if env.is_main:
            _write_history(out, history)
        metric = record[f"val_{task.primary}"]
        improved = metric > state.best_metric
        state = LoopState(epoch=epoch + 1, step=state.step, best_metric=max(metric, state.best_metric),
                          best_epoch=epoch + 1 if improved else state.best_epoch)
        saved = checkpoint.save(ckpt_dir, state, dmp, opt, fingerprint)
        if improved:
            checkpoint.mark_best(saved)
    if config.select_best and state.best_epoch and state.best_epoch != state.epoch:
        _restore_best(ckpt_dir, dmp, opt, fingerprint)
    test = task.evaluate(dmp, "test", config.eval_batch_size)
    tested = state.best_epoch if config.select_best and state.best_epoch else len(history)
    return TrainResult(dmp, history, test, placements(dmp.plan), tested)


def _restore_best(ckpt_dir: Path, dmp: DistributedModelParallel, opt: CombinedOptimizer, fingerprint: str) -> None:
    """Load the checkpoint marked best; CheckpointError if the marker is gone."""
    best = checkpoint.best(ckpt_dir)
    if best is None:
        raise CheckpointError(f"{ckpt_dir / 'BEST'}: missing, so the best epoch cannot be restored; "
                              "delete the checkpoints or set train.select_best = false")
    checkpoint.load(best, dmp, opt, fingerprint)


def _train_epoch(task: Task, dataset: ClickDataset, dmp: DistributedModelParallel, opt: CombinedOptimizer,
                 optim: OptimConfig, config: TrainConfig, env: DistEnv, state: LoopState,
                 ckpt_dir: Path, fingerprint: str) -> LoopState:
    global_batch = optim.batch_size * env.world_size
    total = None if task.positives_only else dataset.num_rows("train") // global_batch * global_batch
    progress = bar(total, f"{task.name} epoch {state.epoch + 1}/{optim.epochs}", enabled=env.is_main,
                   unit="sample")
    progress.update(state.batch * global_batch)
    batches = dataset.batches("train", optim.batch_size, epoch=state.epoch, shuffle=True, rank=env.rank,
                              world_size=env.world_size, drop_last=True, positives_only=task.positives_only)
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        if i < state.batch:
            continue
        loss, _ = dmp(batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        state.batch, state.step = i + 1, state.step + 1
        state.loss_sum, state.loss_count = state.loss_sum + float(loss.detach()), state.loss_count + 1
        state.samples += global_batch
        progress.update(global_batch)
        progress.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}")
        if config.checkpoint_every and state.step % config.checkpoint_every == 0:
            state.seconds += time.perf_counter() - start
            checkpoint.save(ckpt_dir, state, dmp, opt, fingerprint)
            start = time.perf_counter()
    progress.close()
    state.seconds += time.perf_counter() - start
    if state.loss_count == 0:
        raise DataError(f"train split gives no full batch of {global_batch} rows; lower {task.name}.optim.batch_size")
    return state


def _epoch_record(task: Task, dmp: DistributedModelParallel, state: LoopState, epoch: int,
                  eval_batch_size: int) -> dict:
    sums = torch.tensor([state.loss_sum, float(state.loss_count)], dtype=torch.float64)
    dist.all_reduce(sums)
    record = {"epoch": epoch + 1, "step": state.step, "train_loss": float(sums[0] / sums[1]),
              "samples_per_s": state.samples / max(state.seconds, 1e-9)}
    record.update({f"val_{k}": v for k, v in task.evaluate(dmp, "val", eval_batch_size).items()})
    return record


def _read_history(out: Path, epochs: int) -> list[dict]:
    path = out / "metrics.jsonl"
    if epochs == 0 or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:epochs]


def _write_history(out: Path, history: list[dict]) -> None:
    write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
