"""Mixed precision: the exact search is the brute-force optimum; the greedy search meets the budget,
equals the optimum where greedy is provably optimal, and is within one step's sensitivity of it
where the sensitivities are convex in bytes; the mixed-precision step probes sensitivities that are
recomputed here and picks the brute-force optimum of them, in exactly the bytes the TBE holds."""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compression.budget import search
from compression.build import teacher_of, teacher_task
from compression.config import VariantConfig
from compression.quantize import decode, encode
from compression.recipe import build_variant
from compression.scorer import CompressedScorer
from compression.tables import FloatTable, ebc_paths
from recsys.config_loading import from_dict
from recsys.serving.size import BITS, table_bytes

PRECISIONS = ("fp16", "int8", "int4", "int2")


@dataclass
class Instance:
    tables: dict[str, FloatTable]
    candidates: dict[str, list[str]]  # most precise first
    sens: dict[str, dict[str, float]]
    budget: float


def _table(name: str, rows: int, dim: int) -> FloatTable:
    return FloatTable("ebc", name, (name,), "SUM", rows, torch.zeros(rows, dim))


def _bytes(table: FloatTable, precision: str) -> int:
    return table_bytes(table.weight.shape[0], table.dim, precision).total


def _size(instance: Instance):
    return lambda name, precision: _bytes(instance.tables[name], precision)


def _steps(instance: Instance) -> list[float]:
    """The sensitivity added by every single one-step lowering of every table."""
    return [instance.sens[n][c[j + 1]] - instance.sens[n][c[j]]
            for n, c in instance.candidates.items() for j in range(len(c) - 1)]


def _instance(rng: np.random.Generator, convex: bool, shape: tuple[int, int] | None = None,
              precisions: tuple[str, ...] | None = None) -> Instance:
    """2-5 tables (random shapes unless `shape`), 2-4 candidates each (unless `precisions`),
    sensitivities rising as precision falls: by a cost per byte saved that grows step by step
    when `convex`, in any order otherwise; a budget between the smallest and the largest choice."""
    tables, candidates, sens = {}, {}, {}
    for i in range(int(rng.integers(2, 6))):
        rows, dim = shape or (int(rng.integers(100, 3000)), int(rng.choice([8, 16, 32, 64])))
        table = tables[f"t{i}"] = _table(f"t{i}", rows, dim)
        chosen = precisions or rng.choice(PRECISIONS, int(rng.integers(2, 5)), replace=False).tolist()
        cands = candidates[f"t{i}"] = sorted(chosen, key=lambda p: -BITS[p])
        rates = rng.uniform(0.0, 1.0, len(cands) - 1)
        values = [float(rng.uniform(0.0, 1e-3))]
        for j, rate in enumerate(np.sort(rates) if convex else rates):
            values.append(values[-1] + rate * (_bytes(table, cands[j]) - _bytes(table, cands[j + 1])) / 1e3)
        sens[f"t{i}"] = dict(zip(cands, values))
    low = sum(_bytes(tables[n], c[-1]) for n, c in candidates.items())
    high = sum(_bytes(tables[n], c[0]) for n, c in candidates.items())
    return Instance(tables, candidates, sens, float(rng.uniform(low, high)))


def _cost(instance: Instance, chosen: dict[str, str]) -> tuple[float, int]:
    """(summed sensitivity, bytes) of an assignment."""
    return (sum(instance.sens[n][p] for n, p in chosen.items()),
            sum(_bytes(instance.tables[n], p) for n, p in chosen.items()))


def _brute_force(instance: Instance) -> dict[str, str]:
    """Every combination: the least summed sensitivity within budget, then the fewest bytes."""
    names = list(instance.tables)
    feasible = [dict(zip(names, combo)) for combo in itertools.product(*instance.candidates.values())]
    return min((c for c in feasible if _cost(instance, c)[1] <= instance.budget), key=lambda c: _cost(instance, c))


@pytest.mark.parametrize("convex", [True, False])
def test_exact_search_is_the_brute_force_optimum(convex):
    rng = np.random.default_rng(10)
    for _ in range(40):
        instance = _instance(rng, convex)
        chosen = search(instance.candidates, instance.sens, _size(instance), instance.budget)
        assert chosen == _brute_force(instance)


def test_greedy_is_optimal_when_every_step_saves_the_same_bytes():
    """Equal tables, two candidates: the optimum lowers the fewest tables that meet the budget, the
    ones whose lowering adds least; greedy lowers exactly those, and raising any back breaks the budget."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        instance = _instance(rng, convex=False, shape=(int(rng.integers(100, 3000)), 16),
                             precisions=tuple(rng.choice(PRECISIONS, 2, replace=False)))
        greedy = search(instance.candidates, instance.sens, _size(instance), instance.budget, exact_limit=0)
        assert greedy == _brute_force(instance)


def test_greedy_is_within_one_step_of_the_optimum_for_convex_sensitivities():
    """With a cost per byte that grows step by step, greedy takes the steps in order of cost per byte:
    the LP relaxation's optimum plus at most its one fractional step, so greedy <= optimum + the
    largest single step. Measured on these instances: greedy is optimal on 30 of 40 (asserted: at least 28)."""
    rng = np.random.default_rng(12)
    optimal = 0
    for _ in range(40):
        instance = _instance(rng, convex=True)
        greedy = search(instance.candidates, instance.sens, _size(instance), instance.budget, exact_limit=0)
        best = _brute_force(instance)
        (greedy_sens, greedy_bytes), best_sens = _cost(instance, greedy), _cost(instance, best)[0]
        assert greedy_bytes <= instance.budget
        assert best_sens <= greedy_sens <= best_sens + max(_steps(instance))
        optimal += greedy == best
    assert optimal >= 28


def test_greedy_lowers_the_least_sensitivity_per_byte_saved_first():
    """Lowering the big table alone (+3) meets the budget; two medium ones (+2 each, less each but
    more per byte) are needed together. Greedy by sensitivity per byte lowers the big one (the
    optimum, 3); by sensitivity alone it would lower both medium ones (4) and could not raise either."""
    tables = {"big": _table("big", 1000, 64), "mid_a": _table("mid_a", 625, 64), "mid_b": _table("mid_b", 625, 64)}
    sens = {"big": {"int8": 0.0, "int4": 3.0}, "mid_a": {"int8": 0.0, "int4": 2.0}, "mid_b": {"int8": 0.0, "int4": 2.0}}
    saved = {n: _bytes(t, "int8") - _bytes(t, "int4") for n, t in tables.items()}
    assert (saved["big"], saved["mid_a"]) == (32000, 20096) and 3 / 32000 < 2 / 20096
    instance = Instance(tables, {n: ["int8", "int4"] for n in tables}, sens,
                        sum(_bytes(t, "int8") for t in tables.values()) - saved["big"])
    greedy = search(instance.candidates, instance.sens, _size(instance), instance.budget, exact_limit=0)
    assert greedy == _brute_force(instance) == {"big": "int4", "mid_a": "int8", "mid_b": "int8"}


@pytest.mark.parametrize("convex", [True, False])
def test_greedy_meets_the_budget_and_leaves_no_slack(convex):
    """Whatever the sensitivities: within budget, and no table can go one step more precise, still
    within budget, for less sensitivity (the slack is spent)."""
    rng = np.random.default_rng(13)
    for _ in range(40):
        instance = _instance(rng, convex)
        greedy = search(instance.candidates, instance.sens, _size(instance), instance.budget, exact_limit=0)
        assert _cost(instance, greedy)[1] <= instance.budget
        for name, precision in greedy.items():
            level = instance.candidates[name].index(precision)
            if level == 0:
                continue
            raised_sens, raised_bytes = _cost(instance, {**greedy, name: instance.candidates[name][level - 1]})
            assert raised_bytes > instance.budget or raised_sens >= _cost(instance, greedy)[0]


def _variant(quantize: dict) -> VariantConfig:
    return from_dict(VariantConfig, {"name": "v", "quantize": quantize}, "compress.variants[0]")


def _sensitivities(model, dataset, candidates: tuple[str, ...], loss: bool) -> dict[str, dict[str, float]]:
    """Recomputed here: each table alone written back as `candidates` decode it (min/max rows plus
    clip search, as the step packs them), the first two val batches of 1024 rows scored; logit MSE
    against the float model, or the increase of their binary cross-entropy."""
    batches = list(itertools.islice(dataset.batches("val", 1024), 2))
    labels = torch.cat([b.labels for b in batches])
    real = labels >= 0  # padding rows count in the logit MSE, not in the loss

    @torch.no_grad()
    def signal(m) -> float | torch.Tensor:
        logits = torch.cat([m.score(b) for b in batches])
        return float(F.binary_cross_entropy_with_logits(logits[real], labels[real])) if loss else logits

    base = signal(model)
    out: dict[str, dict[str, float]] = {}
    for path, ebc in ebc_paths(model).items():
        for name, bag in ebc.embedding_bags.items():
            out[name] = {}
            for precision in candidates:
                probe = copy.deepcopy(model)
                with torch.no_grad():
                    rows = decode(*encode(bag.weight.detach(), precision), precision)
                    ebc_paths(probe)[path].embedding_bags[name].weight.copy_(rows)
                value = signal(probe)
                out[name][precision] = value - base if loss else float((value - base).square().mean())
    return out


@pytest.mark.parametrize("sensitivity", ["output", "loss"])
def test_mixed_precision_picks_the_least_sensitive_assignment_in_budget(tiny_exported, tiny_dataset, sensitivity):
    exported = tiny_exported("dlrm")
    candidates = ("int8", "int4", "int2")
    config = _variant({"budget_ratio": 3.5, "sensitivity": sensitivity, "sensitivity_batches": 2,
                       "candidates": list(candidates)})
    variant = build_variant(teacher_of(exported), teacher_task(exported, tiny_dataset), config)
    sens = variant.notes["mixed_precision"]["sensitivity"]
    expected = _sensitivities(exported.model, tiny_dataset, candidates, sensitivity == "loss")
    assert sens.keys() == expected.keys()
    for name in sens:
        assert sens[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-9)
    shapes = {n: tuple(bag.weight.shape) for ebc in ebc_paths(exported.model).values()
              for n, bag in ebc.embedding_bags.items()}
    fp32 = sum(-(-rows * dim * 4 // 128) * 128 for rows, dim in shapes.values())  # rows padded to 128 bytes
    assert variant.fp32_total == fp32 and variant.notes["mixed_precision"]["budget_bytes"] == int(fp32 / 3.5)
    instance = Instance({n: _table(n, *s) for n, s in shapes.items()}, {n: list(candidates) for n in shapes},
                        sens, fp32 / 3.5)
    chosen = variant.notes["precisions"]
    assert chosen == _brute_force(instance) and len(set(chosen.values())) > 1  # genuinely mixed
    expected_bytes = sum(-(-rows * (dim * BITS[chosen[n]] // 8 + 4) // 128) * 128 for n, (rows, dim) in shapes.items())
    runtime = CompressedScorer(variant.model, variant.tables, variant.fp32_total).runtime_bytes()
    assert runtime == expected_bytes <= fp32 / 3.5
