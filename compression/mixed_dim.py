"""Mixed dimensions: each table at its own width r <= d, its rows projected to the model's d.

A table at width r is its rank-r truncated SVD, A (n x r) times B (r x d): the factorize step's
fit, stored and served as factorize's tables are (A in the TBE, B a map after the lookup), so a
choice of widths is a choice of per-table ranks and the step ends in `factorize` with them
(fine-tuned if asked). Full width leaves a table whole.

Widths are chosen from `dims` under a byte budget by `compression.budget.search`: each width
costs the table's bytes at the precision the variant stores (rows, scale/bias, padding and map,
by the one byte counter) and harms by its sensitivity:
- "frequency": the access-weighted squared error of the rank-r rows over the train split,
  sum_i count_i ||E_i - (A B)_i||^2 / all lookups: popular rows need width, rare ones do not;
- "output": the probe batches' logit MSE with only that table at width r (as mixed precision's).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from compression.budget import search
from compression.config import FactorizeConfig, MixedDimConfig
from compression.factorize import factorize, svd_factors
from compression.probe import probe_batches, table_harm
from compression.prune import access_counts
from compression.quantize import PACK_MULTIPLE
from compression.tables import FloatTable
from recsys.errors import ConfigError
from recsys.serving.size import table_bytes
from recsys.train.tasks import Task

COUNT_BATCH_SIZE = 4096


def width_bytes(table: FloatTable, width: int, precision: str) -> int:
    """Bytes of `table` at `width` (a map when below its dim) stored at `precision`."""
    return table_bytes(table.num_embeddings, width, precision, map_dim=table.dim if width < table.dim else 0).total


def widths(config: MixedDimConfig, tables: dict[str, FloatTable], precision: str) -> dict[str, list[int]]:
    """Per table, its own dim then the `dims` below it that `precision` packs and that take fewer
    bytes than the whole table, widest first."""
    out = {}
    for name, table in tables.items():
        if table.remap is not None or table.projection is not None:
            raise ConfigError(f"mixed_dim: table {name} is pruned or factorized; mixed_dim needs whole rows")
        whole = width_bytes(table, table.dim, precision)
        below = (r for r in set(config.dims) if r < table.dim and r % PACK_MULTIPLE[precision] == 0)
        out[name] = [table.dim] + sorted((r for r in below if width_bytes(table, r, precision) < whole), reverse=True)
    return out


def at_width(table: FloatTable, width: int) -> FloatTable:
    """`table` as its rank-`width` SVD factors (itself at full width)."""
    if width >= table.dim:
        return table
    a, b = svd_factors(table.weight, width)
    return dataclasses.replace(table, weight=a, projection=b)


def frequency_harm(task: Task, tables: dict[str, FloatTable],
                   options: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """Per table and width: sum over ids of (train lookups of the id) x ||E_i - (A B)_i||^2, over all lookups."""
    counts = access_counts(task.dataset.batches("train", COUNT_BATCH_SIZE), tables)
    total = float(sum(c.sum() for c in counts.values())) or 1.0
    out: dict[str, dict[int, float]] = {}
    for name, table in tables.items():
        u, s, vh = torch.linalg.svd(table.weight.double(), full_matrices=False)
        out[name] = {}
        for r in options[name]:
            residual = table.weight.double() - (u[:, :r] * s[:r]) @ vh[:r]
            out[name][r] = float((counts[name] * residual.square().sum(1)).sum()) / total
    return out


def mixed_dim(config: MixedDimConfig, teacher: nn.Module, model: nn.Module, tables: dict[str, FloatTable],
              task: Task | None, fp32_total: int, precision: str,
              progress: bool = False) -> tuple[nn.Module, dict[str, FloatTable], dict[str, Any]]:
    """The model, its tables at the chosen widths (factorized, fine-tuned if asked) and notes (widths,
    harm, budget). `precision`: what the variant stores the rows at (the budget's byte count)."""
    assert config.budget_ratio is not None  # VariantConfig requires it with the step
    options = widths(config, tables, precision)
    budget = fp32_total / config.budget_ratio
    smallest = sum(width_bytes(tables[n], o[-1], precision) for n, o in options.items())
    if smallest > budget:
        raise ConfigError(f"mixed_dim.budget_ratio: {config.budget_ratio}x cannot be met at {precision}; the "
                          f"smallest choice is {smallest} bytes ({fp32_total / smallest:.2f}x)")
    if task is None:
        raise ConfigError("mixed_dim: needs data for its sensitivities")
    if config.sensitivity == "frequency":
        harm = frequency_harm(task, tables, options)
    else:
        harm = table_harm(task, model, tables, options, at_width,
                          probe_batches(task, config.sensitivity_batches, False, "mixed_dim.sensitivity"), False)
    chosen = search(options, harm, lambda n, r: width_bytes(tables[n], r, precision), budget)
    ranks = {n: r for n, r in chosen.items() if r < tables[n].dim}
    model, factorized, notes = factorize(FactorizeConfig(ranks=ranks, fine_tune=config.fine_tune), teacher, model,
                                         tables, task, progress, key="mixed_dim")
    return model, factorized, {**notes, "widths": chosen, "harm": harm, "budget_bytes": int(budget),
                               "precision": precision}
