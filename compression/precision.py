"""Which precision each table gets: explicit (`default` + per-table overrides) or mixed (a byte budget).

Automatic mixed precision: each table's sensitivity is measured with only that table lowered to
a candidate precision (the rest as they are): the mean squared change of the probe batches'
logits (default; label-free, so less noisy on small validation splits) or the increase of the
task's loss on them. Starting from every table at its most precise candidate, the table whose
next step down costs the least loss per byte saved is lowered until the byte budget holds (or,
when the combinations are few, every combination is searched: `compression.budget`). Tables named in
`quantize.tables` keep their precision.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from compression.budget import search
from compression.config import QuantizeConfig
from compression.probe import probe_batches, table_harm
from compression.quantize import BITS, PACK_MULTIPLE, check_precision
from compression.tables import FloatTable, pack, unpack
from recsys.errors import ConfigError
from recsys.serving.size import table_bytes
from recsys.train.tasks import Task


def bytes_of(table: FloatTable, precision: str) -> int:
    """What `table` packed at `precision` takes in the TBE: its rows, remap and (factorized) map."""
    remap_ids = table.num_embeddings if table.remap is not None else 0
    map_dim = table.out_dim if table.projection is not None else 0
    return table_bytes(table.weight.shape[0], table.dim, precision, remap_ids, map_dim=map_dim).total


def _check_overrides(config: QuantizeConfig, tables: dict[str, FloatTable]) -> None:
    """ConfigError naming the key if `quantize.tables` names an unknown table or an unpackable dim."""
    unknown = sorted(set(config.tables) - set(tables))
    if unknown:
        raise ConfigError(f"quantize.tables.{unknown[0]}: no such table (tables: {', '.join(tables)})")
    for name, precision in config.tables.items():
        check_precision(f"quantize.tables.{name}", precision, tables[name].dim)


def explicit_precisions(config: QuantizeConfig, tables: dict[str, FloatTable]) -> dict[str, str]:
    """`default` for every table, `tables` overriding; ConfigError for unknown tables or bad dims."""
    _check_overrides(config, tables)
    for name, table in tables.items():
        if name not in config.tables:
            check_precision(f"quantize.default (table {name})", config.default, table.dim)
    return {name: config.tables.get(name, config.default) for name in tables}


def sensitivity(task: Task, model: nn.Module, tables: dict[str, FloatTable],
                config: QuantizeConfig, candidates: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """How much lowering only table t to precision p hurts: val-loss increase or logit MSE."""
    loss = config.sensitivity == "loss"
    return table_harm(task, model, tables, candidates, lambda t, p: unpack(pack(t, p, config.clip_search)),
                      probe_batches(task, config.sensitivity_batches, loss), loss)


def _candidates(config: QuantizeConfig, tables: dict[str, FloatTable]) -> dict[str, list[str]]:
    """Per table, the precisions the search may pick, most bytes (then bits) first (fixed tables: one)."""
    out = {}
    for name, table in tables.items():
        allowed = [config.tables[name]] if name in config.tables else [
            p for p in config.candidates if table.dim % PACK_MULTIPLE[p] == 0]
        if not allowed:
            raise ConfigError(f"quantize.candidates: none can pack table {name} of dim {table.dim}")
        out[name] = sorted(allowed, key=lambda p: (-bytes_of(table, p), -BITS[p]))  # fp16 < int8 on narrow rows
    return out


def mixed_precision(task: Task | None, model: nn.Module, tables: dict[str, FloatTable],
                    config: QuantizeConfig, fp32_total: int, cache: dict[str, Any] | None = None,
                    origin: str = "") -> tuple[dict[str, str], dict[str, Any]]:
    """Per-table precisions meeting `budget_ratio` with the least summed sensitivity: exact search
    when the combinations are few, else greedy lowering then spending the slack. Sensitivities do
    not depend on the budget: `cache` keeps them per (`origin` of the tables, probe settings)."""
    if config.budget_ratio is None:
        raise ValueError("mixed precision needs quantize.budget_ratio")
    _check_overrides(config, tables)
    budget = fp32_total / config.budget_ratio
    candidates = _candidates(config, tables)
    smallest = sum(min(bytes_of(t, p) for p in candidates[n]) for n, t in tables.items())  # narrow rows: fp16 < int8
    if smallest > budget:
        raise ConfigError(f"quantize.budget_ratio: {config.budget_ratio}x cannot be met; the smallest "
                          f"choice is {smallest} bytes ({fp32_total / smallest:.2f}x)")
    key = repr(("sensitivity", origin, config.sensitivity, config.sensitivity_batches, config.clip_search,
                candidates))
    cache = {} if cache is None else cache
    if key not in cache:
        if task is None:
            raise ConfigError("quantize.budget_ratio: mixed precision needs data for its sensitivity probes")
        cache[key] = sensitivity(task, model, tables, config, candidates)
    sens = cache[key]
    chosen = search(candidates, sens, lambda name, precision: bytes_of(tables[name], precision), budget)
    return chosen, {"sensitivity": sens, "budget_bytes": int(budget)}
