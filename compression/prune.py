"""Row pruning: drop the least important rows of each table; pruned ids then look up a zero
vector, or one shared fallback row (the mean of the dropped rows).

Importance is train-data access frequency, row L2 norm, or a loss-based first-order estimate
|sum over train batches of grad . w| (the loss change when a row is zeroed). The budget is a
fraction of rows per table, or one global threshold over all tables' rows. Kept rows are
compacted in their original order and a remap (logical id -> stored row, -1 if pruned) goes to
the TBE (`set_index_remappings`), so a lookup stays one kernel.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torchrec.datasets.utils import Batch

from compression.config import PruneConfig
from compression.tables import FloatTable, ebc_paths
from recsys.data.batching import click_labels
from recsys.data.jagged import take_rows
from recsys.errors import ConfigError
from recsys.serving.size import table_bytes
from recsys.train.tasks import Task


def access_counts(batches: Iterable[Batch], tables: dict[str, FloatTable]) -> dict[str, torch.Tensor]:
    """How often each id of each table occurs in `batches` (padding rows not counted)."""
    feature_table = {f: name for name, t in tables.items() for f in t.feature_names}
    counts = {name: torch.zeros(t.num_embeddings, dtype=torch.float64) for name, t in tables.items()}
    for batch in batches:
        real = take_rows(batch.sparse_features, torch.nonzero(click_labels(batch.labels) >= 0).flatten())
        for key, jt in real.to_dict().items():
            if key in feature_table:
                ids = jt.values().long()
                counts[feature_table[key]].index_add_(0, ids, torch.ones(len(ids), dtype=torch.float64))
    return counts


def loss_importance(task: Task, model: nn.Module, batch_size: int, max_batches: int) -> dict[str, torch.Tensor]:
    """Per row |sum_b grad_b . w|: first-order change of the task's loss when the row is zeroed, over
    full train batches."""
    model = copy.deepcopy(model).train()
    weights = {c.name: ebc.embedding_bags[c.name].weight for ebc in ebc_paths(model).values()
               for c in ebc.embedding_bag_configs()}
    grads = {name: torch.zeros_like(w) for name, w in weights.items()}
    batches = task.dataset.batches("train", batch_size, drop_last=True, positives_only=task.positives_only)
    for _, batch in zip(range(max_batches), batches):
        model.zero_grad()
        task.loss(model, [batch]).backward()
        for name, w in weights.items():
            if w.grad is not None:
                grads[name] += w.grad
    return {name: (grads[name] * weights[name].detach()).sum(1).abs().double() for name in weights}


def importance(config: PruneConfig, model: nn.Module, tables: dict[str, FloatTable], task: Task | None,
               batch_size: int = 4096) -> dict[str, torch.Tensor]:
    """Row scores by the configured method (higher = keep), on logical ids."""
    if config.method == "l2":
        return {name: _logical(t, t.weight.norm(dim=1).double()) for name, t in tables.items()}
    if task is None:
        raise ConfigError(f"prune.method: {config.method!r} needs the training data")
    if config.method == "frequency":
        return access_counts(task.dataset.batches("train", batch_size, positives_only=task.positives_only), tables)
    return loss_importance(task, model, batch_size, config.max_batches)


def _logical(table: FloatTable, stored_scores: torch.Tensor) -> torch.Tensor:
    """Scores per logical id from scores per stored row (already-pruned ids score -inf)."""
    if table.remap is None:
        return stored_scores
    out = torch.full((table.num_embeddings,), float("-inf"), dtype=torch.float64)
    kept = table.remap >= 0
    out[kept] = stored_scores[table.remap[kept].long()]
    return out


def keep_masks(config: PruneConfig, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Which logical ids survive: per-table top fraction, or one global score threshold."""
    unknown = sorted(set(config.tables) - set(scores))
    if unknown:
        raise ConfigError(f"prune.tables.{unknown[0]}: no such table (tables: {', '.join(scores)})")
    if config.scope == "global":
        return _global_masks(config.ratio, scores)
    return {name: _top_mask(s, config.tables.get(name, config.ratio)) for name, s in scores.items()}


def kept_rows(rows: int, ratio: float) -> int:
    """How many of a table's `rows` a per-table `ratio` keeps (at least one)."""
    return max(1, rows - int(np.floor(ratio * rows)))


def pruning_saves(rows: int, dim: int, precision: str, ratio: float, fallback: str) -> int:
    """Bytes that pruning a table of `rows` x `dim` at a per-table `ratio` saves once stored at
    `precision`, by the one byte counter: its dropped rows less its remap (4 bytes per id) and
    the fallback's mean row. Negative when pruning makes the table bigger."""
    kept = kept_rows(rows, ratio)
    if kept == rows:
        return 0
    stored = kept + (1 if fallback == "mean" else 0)
    return table_bytes(rows, dim, precision).total - table_bytes(stored, dim, precision, remap_ids=rows).total


def _top_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    keep = kept_rows(scores.numel(), ratio)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[torch.argsort(scores, descending=True, stable=True)[:keep]] = True
    return mask


def _global_masks(ratio: float, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    everything = torch.cat(list(scores.values()))
    drop = int(np.floor(ratio * everything.numel()))
    if drop == 0:
        return {name: torch.ones(s.numel(), dtype=torch.bool) for name, s in scores.items()}
    threshold = torch.kthvalue(everything, drop).values
    masks = {name: s > threshold for name, s in scores.items()}
    return {name: m if m.any() else _top_mask(scores[name], 1.0) for name, m in masks.items()}


def apply_mask(table: FloatTable, keep: torch.Tensor, fallback: str = "zero") -> FloatTable:
    """The table holding only the kept logical ids, compacted in order, with its int32 remap.

    fallback "mean": one extra stored row, the mean of the dropped rows, that every pruned id maps
    to (a pruned id then looks up an average row instead of zeros)."""
    if bool(keep.all()) and table.remap is None:
        return table
    old = table.remap if table.remap is not None else torch.arange(table.num_embeddings, dtype=torch.int32)
    dropped = ~keep & (old >= 0)
    keep = keep & (old >= 0)
    kept = int(keep.sum())
    remap = torch.full((table.num_embeddings,), -1, dtype=torch.int32)
    remap[keep] = torch.arange(kept, dtype=torch.int32)
    weight = table.weight[old[keep].long()]
    if fallback == "mean" and bool(dropped.any()):
        weight = torch.cat([weight, table.weight[old[dropped].long()].mean(0, keepdim=True)])
        remap[~keep] = kept
    return replace(table, weight=weight.contiguous(), remap=remap)


def prune(config: PruneConfig, model: nn.Module, tables: dict[str, FloatTable], task: Task | None,
          batch_size: int = 4096) -> dict[str, FloatTable]:
    """Every table with its least important rows dropped as `config` asks (`task`: the training data
    and loss that frequency and loss importance need)."""
    masks = keep_masks(config, importance(config, model, tables, task, batch_size))
    return {name: apply_mask(t, masks[name], config.fallback) for name, t in tables.items()}
