"""Recipes: a variant's steps (distill -> prune -> quantize) applied in the config's order.

Automatic mixed precision: each table's sensitivity is measured with only that table lowered to
a candidate precision (the rest as they are): the mean squared change of the validation logits
(default; label-free, so less noisy on small validation splits) or the validation-loss increase.
Starting from every table at its most precise candidate, the table whose next step down costs
the least loss per byte saved is lowered until the byte budget holds. Tables named in
`quantize.tables` keep their precision.
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from compression.config import DistillConfig, QuantizeConfig, VariantConfig
from compression.distill import student_alone, student_config, train_student
from compression.evaluate import evaluate, mean_loss, probe_batches, split_logits
from compression.prune import prune
from compression.quantize import BITS, PACK_MULTIPLE, check_precision
from compression.size import fp32_bytes, table_bytes
from compression.tables import FloatTable, float_tables, load_tables, pack, unpack
from compression.variant import Variant
from recsys.config_loading import to_dict
from recsys.data.dataset import ClickDataset
from recsys.data.schema import Schema
from recsys.errors import ConfigError

EXACT_SEARCH_LIMIT = 100_000  # combinations of per-table precisions searched exhaustively


@dataclass
class Teacher:
    kind: str
    schema: Schema
    config: dict[str, Any]  # the model config
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)  # where it came from: its run's config, test metrics


def _bytes(table: FloatTable, precision: str) -> int:
    remap_ids = table.num_embeddings if table.remap is not None else 0
    return table_bytes(table.weight.shape[0], table.dim, precision, remap_ids).total


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


def _probe_signal(kind: str, dataset: ClickDataset, config: QuantizeConfig):
    """A function of the probe model: its val loss, or its val logits (for the output distortion)."""
    loss = config.sensitivity == "loss"
    batches = probe_batches(kind, dataset, config.sensitivity_batches, loss)
    if loss:
        return lambda m: mean_loss(kind, m, batches)
    return lambda m: split_logits(kind, m, batches)


def _distortion(config: QuantizeConfig, probe, base) -> float:
    return float(probe - base) if config.sensitivity == "loss" else float((probe - base).square().mean())


def sensitivity(kind: str, model: nn.Module, tables: dict[str, FloatTable], dataset: ClickDataset,
                config: QuantizeConfig, candidates: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """How much lowering only table t to precision p hurts: val-loss increase or logit MSE."""
    probe = copy.deepcopy(model)
    load_tables(probe, tables)
    signal = _probe_signal(kind, dataset, config)
    base = signal(probe)
    out: dict[str, dict[str, float]] = {}
    for name, table in tables.items():
        out[name] = {}
        for precision in candidates[name]:
            load_tables(probe, {name: unpack(pack(table, precision, config.clip_search))})
            out[name][precision] = _distortion(config, signal(probe), base)
        load_tables(probe, {name: table})
    return out


def _candidates(config: QuantizeConfig, tables: dict[str, FloatTable]) -> dict[str, list[str]]:
    """Per table, the precisions the search may pick, most precise first (fixed tables: one)."""
    out = {}
    for name, table in tables.items():
        allowed = [config.tables[name]] if name in config.tables else [
            p for p in config.candidates if table.dim % PACK_MULTIPLE[p] == 0]
        if not allowed:
            raise ConfigError(f"quantize.candidates: none can pack table {name} of dim {table.dim}")
        out[name] = sorted(allowed, key=lambda p: -BITS[p])
    return out


def mixed_precision(kind: str, model: nn.Module, tables: dict[str, FloatTable], dataset: ClickDataset,
                    config: QuantizeConfig, fp32_total: int, cache: dict[str, Any] | None = None,
                    origin: str = "") -> tuple[dict[str, str], dict[str, Any]]:
    """Per-table precisions meeting `budget_ratio` with the least summed sensitivity: exact search
    when the combinations are few, else greedy lowering then spending the slack. Sensitivities do
    not depend on the budget: `cache` keeps them per (`origin` of the tables, probe settings)."""
    _check_overrides(config, tables)
    budget = fp32_total / config.budget_ratio
    candidates = _candidates(config, tables)
    smallest = sum(_bytes(t, candidates[n][-1]) for n, t in tables.items())
    if smallest > budget:
        raise ConfigError(f"quantize.budget_ratio: {config.budget_ratio}x cannot be met; the smallest "
                          f"choice is {smallest} bytes ({fp32_total / smallest:.2f}x)")
    key = repr(("sensitivity", origin, config.sensitivity, config.sensitivity_batches, config.clip_search,
                candidates))
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = sensitivity(kind, model, tables, dataset, config, candidates)
    sens = cache[key]
    if math.prod(len(c) for c in candidates.values()) <= EXACT_SEARCH_LIMIT:
        chosen = _exact(tables, candidates, sens, budget)
    else:
        level = {name: 0 for name in tables}
        while _total(tables, candidates, level) > budget:
            level[_cheapest_step(tables, candidates, level, sens)] += 1
        _spend_slack(tables, candidates, level, sens, budget)
        chosen = {n: candidates[n][level[n]] for n in tables}
    return chosen, {"sensitivity": sens, "budget_bytes": int(budget)}


def _exact(tables: dict[str, FloatTable], candidates: dict[str, list[str]], sens: dict[str, dict[str, float]],
           budget: float) -> dict[str, str]:
    """Every combination of candidates: the least summed sensitivity within budget (then fewest bytes)."""
    names = list(tables)
    options = [[(sens[n][p], _bytes(tables[n], p), p) for p in candidates[n]] for n in names]
    best = min((combo for combo in itertools.product(*options) if sum(c[1] for c in combo) <= budget),
               key=lambda combo: (sum(c[0] for c in combo), sum(c[1] for c in combo)))
    return {n: c[2] for n, c in zip(names, best)}


def _total(tables: dict[str, FloatTable], candidates: dict[str, list[str]], level: dict[str, int]) -> int:
    return sum(_bytes(t, candidates[n][level[n]]) for n, t in tables.items())


def _spend_slack(tables: dict[str, FloatTable], candidates: dict[str, list[str]], level: dict[str, int],
                 sens: dict[str, dict[str, float]], budget: float) -> None:
    """Raise tables back (largest loss reduction first) while the budget still holds: the last
    lowering step may have saved more bytes than needed."""
    while True:
        gains = []
        for name in tables:
            if level[name] == 0:
                continue
            level[name] -= 1
            fits = _total(tables, candidates, level) <= budget
            level[name] += 1
            gain = sens[name][candidates[name][level[name]]] - sens[name][candidates[name][level[name] - 1]]
            if fits and gain > 0:
                gains.append((gain, name))
        if not gains:
            return
        level[max(gains)[1]] -= 1


def _cheapest_step(tables: dict[str, FloatTable], candidates: dict[str, list[str]], level: dict[str, int],
                   sens: dict[str, dict[str, float]]) -> str:
    """The table whose next lower precision adds the least loss per byte saved."""
    best, best_cost = "", float("inf")
    for name, table in tables.items():
        if level[name] + 1 >= len(candidates[name]):
            continue
        now, nxt = candidates[name][level[name]], candidates[name][level[name] + 1]
        saved = _bytes(table, now) - _bytes(table, nxt)
        cost = (sens[name][nxt] - sens[name][now]) / saved if saved > 0 else float("inf")
        if cost < best_cost or not best:
            best, best_cost = name, cost
    return best


def _distill(teacher: Teacher, dataset: ClickDataset, config: DistillConfig, ks: tuple[int, ...],
             progress: bool) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    student = train_student(teacher.kind, teacher.schema, teacher.model, teacher.config, dataset, config, progress)
    alone = student_alone(teacher.kind, teacher.schema, teacher.model, teacher.config, dataset, config, progress)
    notes = {"student_distilled": evaluate(teacher.kind, student, dataset, "test", ks=ks),
             "student_alone": evaluate(teacher.kind, alone, dataset, "test", ks=ks)}
    return student, student_config(teacher.config, config), notes


def _fp32_total(model: nn.Module) -> int:
    return fp32_bytes((t.num_embeddings, t.dim) for t in float_tables(model).values())


def build_variant(teacher: Teacher, dataset: ClickDataset, config: VariantConfig,
                  ks: tuple[int, ...] = (10, 20), progress: bool = False,
                  cache: dict[str, Any] | None = None) -> Variant:
    """Apply the variant's steps in order; the result holds packed tables and the dense model.

    `cache` keeps what variants can share: distilled students by distill config (so 'distilled'
    and 'distilled + quantized' train the student, and its student-alone twin, once) and table
    sensitivities by the steps that made the tables (so a budget sweep probes once)."""
    cache = {} if cache is None else cache
    origin: list[str] = []
    fp32_total = _fp32_total(teacher.model)
    model, model_config, notes = teacher.model, teacher.config, {}
    tables = float_tables(model)
    precisions = {name: "fp32" for name in tables}
    for step in config.steps:
        if step == "distill":
            key = repr(("student", config.distill))
            if key not in cache:
                cache[key] = _distill(teacher, dataset, config.distill, ks, progress)
            model, model_config, distilled = cache[key]
            origin.append(key)
            notes = dict(distilled)
            tables = float_tables(model)
            precisions = {name: "fp32" for name in tables}
        elif step == "prune":
            tables = prune(config.prune, teacher.kind, model, tables, dataset)
            origin.append(repr(config.prune))
        elif config.quantize.budget_ratio is not None:
            precisions, notes["mixed_precision"] = mixed_precision(
                teacher.kind, model, tables, dataset, config.quantize, fp32_total, cache, repr(origin))
        else:
            precisions = explicit_precisions(config.quantize, tables)
    packed = {n: pack(t, precisions[n], config.quantize.clip_search) for n, t in tables.items()}
    notes["precisions"] = precisions
    return Variant(config.name, teacher.kind, teacher.schema, model_config, model, packed, fp32_total,
                   to_dict(config), notes, teacher.meta)


def fp32_variant(teacher: Teacher) -> Variant:
    """The baseline every ratio and delta refers to: the teacher's tables in an fp32 TBE."""
    packed = {n: pack(t, "fp32") for n, t in float_tables(teacher.model).items()}
    return Variant("fp32", teacher.kind, teacher.schema, teacher.config, teacher.model, packed,
                   _fp32_total(teacher.model), {"name": "fp32", "steps": []},
                   {"precisions": {n: "fp32" for n in packed}}, teacher.meta)
