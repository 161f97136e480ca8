"""Benchmark of compressed embedding variants: bytes, accuracy and latency side by side.

Three parts, each printed as one table (variant, bytes, ratio, AUC, delta AUC, p50, p99, QPS)
and written as CSV, with a PNG of AUC vs bytes and AUC vs p99 (Pareto front marked):

1. MovieLens-100k, the dim-64 DLRM teacher of configs/movielens_compress.toml.
2. Synthetic world, the dim-64 DLRM teacher of configs/synthetic_compress.toml.
   Both teachers are trained here through the `recsys run` CLI (or reused from --out).
3. Criteo-like log (26 tables of uneven importance, configs/criteo_like.toml): uniform int8/int4/
   int2 against mixed precision at exactly uniform int4's and int2's bytes, with a paired
   bootstrap interval on the AUC difference (same test rows for both).
4. Large tables (2.5 GB at fp32, Zipf ids, dim 64 and 128): TBE lookup latency and QPS of
   fp32 / fp16 / int8 / int4 / int2 measured interleaved in one process (no accuracy: the
   weights are random).
5. Beyond quantization (`--parts beyond`; MovieLens dim-64 teacher, and the Criteo-like one with
   `beyond_criteo`, on BIG_GRID: ranks 8 and 4, equal bytes at 24x and 32x, SVD only to 127x): every variant's AUC
   difference to fp32 with its paired interval, the accuracy/bytes curve from about 4x to 100x (uniform precisions;
   factorize ranks x precisions, fine-tuned against the teacher; pruning; mixed precision), the
   best variant at >= 32x with a paired bootstrap interval of its AUC difference to fp32, the
   three shape-changing methods compared at equal bytes (each topped by mixed precision at the
   same budget, so every one fills the same bytes), QPS at batch 4096 against the fp32 TBE, and
   a PNG of delta AUC vs compression ratio by method with the Pareto front. `beyond_ensemble`
   (after `beyond`): its rank-4 variants fine-tuned from ensemble teachers (bench/distill_teachers.py's
   members, `--members`) instead of the teacher alone, side by side, with the paired gain.

    python bench/compression_bench.py          # full (~25 min on 2 cores)
    python bench/compression_bench.py --quick  # smoke run
    python bench/compression_bench.py --parts large --device cuda  # large-table QPS on a GPU
    nice -n 15 python bench/compression_bench.py --parts beyond_criteo --threads 1  # on a loaded machine
"""
from __future__ import annotations

import argparse
import logging
import math
import subprocess
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchrec import KeyedJaggedTensor

from compression.build import compress
from compression.config import CompressConfig, FactorizeConfig, MixedDimConfig, TimingConfig
from compression.factorize import table_ranks
from compression.latency import measure
from compression.mixed_dim import width_bytes, widths
from compression.quantize import PACK_MULTIPLE
from compression.report import VariantRow, format_table, plot, run_rows, write_csv
from compression.scorer import build_quant_ebc
from compression.tables import FloatTable, float_bytes, float_tables, pack
from compression.variant import load_variant, read_manifest
from recsys.app.config import load_config
from recsys.config_loading import from_dict, read_toml
from recsys.data.config import DataConfig
from recsys.data.sources import load_dataset
from recsys.errors import UserError
from recsys.metrics.ctr import PairedDifference, paired_auc_difference
from recsys.serving.export import ExportedModel, load_model
from recsys.serving.size import fp32_bytes, row_bytes, table_bytes, tbe_bytes

ML_CONFIG, SYNTHETIC_CONFIG = "configs/movielens_compress.toml", "configs/synthetic_compress.toml"
CRITEO_LIKE_CONFIG = "configs/criteo_like.toml"


@dataclass(frozen=True)
class Scale:
    """Sizes of every part; --quick shrinks them."""

    distill_epochs: int
    latency: TimingConfig
    synthetic_rows: int
    criteo_like_rows: int
    large_bytes: float  # fp32 bytes of the large-table part
    large_latency: TimingConfig
    fine_tune_epochs: int  # of the factorized variants (beyond quantization)
    beyond_latency: TimingConfig  # at batch 4096
    bootstrap_rounds: int


FULL = Scale(4, TimingConfig(repeats=5, iters=20, warmup=3), 400_000, 1_000_000, 2.5e9,
             TimingConfig(repeats=5, iters=10, warmup=3), 2, TimingConfig(batch_sizes=(4096,), repeats=5, iters=6,
                                                                         warmup=2), 1000)
QUICK = Scale(1, TimingConfig(batch_sizes=(1, 512, 4096), repeats=2, iters=4, warmup=1), 60_000, 100_000, 1e8,
              TimingConfig(repeats=2, iters=4, warmup=1), 1, TimingConfig(batch_sizes=(4096,), repeats=2, iters=2,
                                                                          warmup=1), 200)

def uniform_ratio(exported: ExportedModel, precision: str) -> float:
    """The fp32/bytes ratio uniform `precision` reaches on this teacher (the mixed-precision budget)."""
    tables = float_tables(exported.model).values()
    total = sum(table_bytes(t.num_embeddings, t.dim, precision).total for t in tables)
    return fp32_bytes((t.num_embeddings, t.dim) for t in tables) / total * (1 - 1e-9)


def variant_configs(exported: ExportedModel, config: str, scale: Scale) -> list[dict[str, Any]]:
    """The variants both datasets get: uniform precisions; mixed precision at int4's and int2's bytes
    and at a budget 1.5% above int2's (no uniform precision fits between int2 and int4: the slack
    goes to the most sensitive tables), with either sensitivity; pruning; the student distilled
    alone; and the scenario config's own `best` recipe."""
    best = next(v for v in read_toml(config)["compress"]["variants"] if v["name"] == "best")
    best["distill"]["epochs"] = min(best["distill"].get("epochs", 3), scale.distill_epochs)
    prune = best.get("prune", {"method": "frequency", "scope": "global", "ratio": 0.3})
    return [
        {"name": "fp16", "quantize": {"default": "fp16"}},
        {"name": "int8", "quantize": {"default": "int8"}},
        {"name": "int4", "quantize": {"default": "int4"}},
        {"name": "int4-minmax", "quantize": {"default": "int4", "clip_search": False}},
        {"name": "int2", "quantize": {"default": "int2"}},
        {"name": "mixed-int4-bytes", "quantize": {"budget_ratio": uniform_ratio(exported, "int4")}},
        {"name": "mixed-int2-bytes", "quantize": {"budget_ratio": uniform_ratio(exported, "int2")}},
        {"name": "mixed-int2-1.5pct", "quantize": {"budget_ratio": uniform_ratio(exported, "int2") / 1.015}},
        {"name": "mixed-int2-1.5pct-loss", "quantize": {"budget_ratio": uniform_ratio(exported, "int2") / 1.015,
                                                      "sensitivity": "loss"}},
        {"name": "prune-int4", "steps": ["prune", "quantize"], "prune": prune, "quantize": {"default": "int4"}},
        {"name": "distilled", "steps": ["distill"], "distill": best["distill"]},
        best,
    ]


def mixed_vs_uniform(exported: ExportedModel) -> list[dict[str, Any]]:
    """Uniform precisions, and mixed precision at exactly the bytes of uniform int4 and int2."""
    out = [{"name": p, "quantize": {"default": p}} for p in ("int8", "int4", "int2")]
    for p in ("int4", "int2"):
        out += [{"name": f"mixed-{p}-bytes", "quantize": {"budget_ratio": uniform_ratio(exported, p)}},
                {"name": f"mixed-{p}-bytes-loss", "quantize": {"budget_ratio": uniform_ratio(exported, p),
                                                              "sensitivity": "loss"}}]
    return out


def test_logits(out: Path, dataset, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The test rows' labels (padding dropped) and every stored variant's logits on them."""
    scorers = {n: load_variant(out / "variants" / n) for n in names}
    logits: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    labels = []
    for batch in dataset.batches("test", 4096):
        labels.append(batch.labels)
        for n, scorer in scorers.items():
            logits[n].append(scorer.score(batch))
    y = torch.cat(labels)
    keep = y >= 0
    return y[keep].numpy(), {n: torch.cat(v)[keep].numpy() for n, v in logits.items()}


def paired_comparison(out: Path, dataset, pairs: list[tuple[str, str]]) -> None:
    """AUC(b) - AUC(a) on the same test rows with a 95% paired bootstrap interval."""
    y, logits = test_logits(out, dataset, sorted({n for pair in pairs for n in pair}))
    for a, b in pairs:
        d = paired_auc_difference(y, logits[a], logits[b])
        print(f"AUC {b} - {a}: {d.delta:+.5f}  (95% paired bootstrap: {d.low:+.5f} .. {d.high:+.5f})")


def run_part(title: str, exported: ExportedModel, dataset, variants: list[dict[str, Any]], scale: Scale,
             out: Path) -> list[VariantRow]:
    config = from_dict(CompressConfig, {"variants": variants}, "compress")
    config = replace(config, latency=scale.latency)
    manifests = compress(exported, dataset, config, out)
    rows = run_rows(out, batch_size=max(scale.latency.batch_sizes))
    print(f"\n== {title} ==\n{format_table(rows)}")
    write_csv(rows, out / "variants.csv")
    plot(rows, out / "variants.png", title)
    distilled = next((m for m in manifests if m["name"] == "distilled"), None)
    if distilled:
        notes = distilled["notes"]
        print(f"student distilled AUC {notes['student_distilled']['auc']:.4f} vs the same student alone "
              f"{notes['student_alone']['auc']:.4f}")
    print(f"wrote {out / 'variants.csv'} and {out / 'variants.png'}")
    return rows


RANKS = (32, 16, 8, 4, 2, 1)  # ranks an equal-bytes factorized variant may take


@dataclass(frozen=True)
class Grid:
    """Which variants the beyond part builds: the factorize points of the curve (rank x precisions of
    A), the ranks also built SVD only at int4 (what fine-tuning adds), the ratios the methods are
    compared at (equal bytes), and SVD-only points (rank x precisions of A, no training) further along."""

    ranks: tuple[tuple[int, tuple[str, ...]], ...]
    svd_only: tuple[int, ...]
    targets: tuple[float, ...]
    control: bool = False  # also the teacher itself fine-tuned as the factorized variants are (fp32 tables)
    svd_points: tuple[tuple[int, tuple[str, ...]], ...] = ()


GRID = Grid(((16, ("int8", "int4")), (8, ("int8", "int4", "int2")), (4, ("int8", "int4")), (2, ("int8", "fp16")),
             (1, ("fp16",))), (4,), (8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 80.0))
# A teacher of tens of millions of floats (the Criteo-like one, 57M): every fine-tuned rank is an epoch
# over its train split and every budget a sensitivity sweep, so only the ranks and budgets around the
# goal: ranks 8 and 4 fine-tuned and SVD only, equal bytes at 24x (rank 8) and 32x (rank 4).
# The control: a teacher trained one epoch gains from the fine-tuning's extra epoch whatever the tables.
# Past 42x, SVD only (no epoch each): rank 2 at int8 (42.6x on the Criteo-like teacher) and fp16 (63.7x),
# rank 1 at fp16 (127x; int8 cannot pack a row of 1, int4 one of 2, and a row's 4 bytes of scale/bias cap them).
BIG_GRID = Grid(((8, ("int8", "int4")), (4, ("int8", "int4"))), (8, 4), (24.0, 32.0), control=True,
                svd_points=((2, ("int8", "fp16")), (1, ("fp16",))))
CONTROL = "fp32-fine-tuned"
HEADLINE_RATIO, HEADLINE_LOSS = 32.0, 0.001  # the goal: >= 32x fewer bytes at AUC >= fp32's - 0.001
FLOOR_PRECISIONS = ("fp16", "int8", "int4")  # the smallest row short of int2 is one of these


def smallest_row(dim: int) -> str:
    """The precision short of int2 with the fewest bytes a row of width `dim` (scale/bias included)."""
    return min((p for p in FLOOR_PRECISIONS if dim % PACK_MULTIPLE[p] == 0), key=lambda p: row_bytes(dim, p))


def factorized_bytes(tables: dict[str, FloatTable], rank: int) -> int:
    """Bytes of `factorize.rank = rank` with every table at its smallest row short of int2 (the one
    byte counter; maps included)."""
    ranks = table_ranks(FactorizeConfig(rank=rank), tables)
    total = 0
    for name, t in tables.items():
        width = ranks.get(name, t.dim)
        total += table_bytes(t.num_embeddings, width, smallest_row(width), map_dim=t.dim if name in ranks else 0).total
    return total


def rank_for(tables: dict[str, FloatTable], budget: float) -> int | None:
    """The largest rank whose tables fit `budget` bytes at their smallest rows short of int2 (mixed
    precision then spends the budget); None if not even rank 1 does."""
    fits = [r for r in RANKS if r < min(t.dim for t in tables.values()) and factorized_bytes(tables, r) <= budget]
    return fits[0] if fits else None


def prune_ratio_for(tables: dict[str, FloatTable], budget: float) -> float | None:
    """The share of rows (rounded up to 1%) to prune so the kept rows fit `budget` at int4 beside the
    remaps (4 bytes per id) and each table's 128-byte padding; None if the remaps alone nearly fill it."""
    ids = sum(t.num_embeddings for t in tables.values())
    row = sum(t.num_embeddings * row_bytes(t.dim, "int4") for t in tables.values()) / ids
    keep = (budget - 4 * ids - 128 * len(tables)) / (row * ids)
    return None if keep < 0.01 else min(0.99, math.ceil((1 - min(keep, 1.0)) * 100) / 100)


@dataclass
class Beyond:
    """The variants of the beyond-quantization part, each with its method, and which variant each
    method has at every equal-bytes target."""

    variants: list[dict[str, Any]] = field(default_factory=list)
    method: dict[str, str] = field(default_factory=dict)
    equal: dict[float, dict[str, str]] = field(default_factory=dict)

    def add(self, method: str, name: str, **config: Any) -> str:
        self.variants.append({"name": name, **config})
        self.method[name] = method
        return name


def beyond_variants(exported: ExportedModel, fine_tune: dict[str, Any], tuned: tuple[int, ...] | None = None,
                    grid: Grid = GRID) -> Beyond:
    """Uniform precisions; the grid's factorize ranks x precisions (fine-tuned, or at ranks outside
    `tuned` SVD only; its `svd_only` ranks also SVD only, at int4); and at each of its target ratios,
    mixed precision alone (where int2 can reach it), pruning + mixed precision and factorize + mixed
    precision, all three at the same budget; with the grid's `control`, the teacher fine-tuned the same way."""
    tables, fp32 = float_tables(exported.model), float_bytes(exported.model)
    out = Beyond()
    for p in ("int8", "int4", "int2"):
        out.add("quantize", p, quantize={"default": p})
    if grid.control:  # the teacher warm-started from itself (same dims: an exact copy), trained as factorize's A
        out.add("fp32 fine-tuned", CONTROL, steps=["distill"], distill={**fine_tune, "warm_start": "truncate"})

    def factorize(rank: int) -> tuple[str, str, dict[str, Any]]:
        """Method label, name suffix and factorize config of `rank`."""
        if tuned is None or rank in tuned:
            return "factorize", "", {"rank": rank, "fine_tune": fine_tune}
        return "factorize (SVD only)", "-svd", {"rank": rank}

    for rank, precisions in grid.ranks:
        method, suffix, config = factorize(rank)
        for p in precisions:
            out.add(method, f"f{rank}{suffix}-{p}", steps=["factorize", "quantize"], factorize=config,
                    quantize={"default": p})
    for rank in grid.svd_only:
        if tuned is None or rank in tuned:
            out.add("factorize (SVD only)", f"f{rank}-svd-int4", steps=["factorize", "quantize"],
                    factorize={"rank": rank}, quantize={"default": "int4"})
    for rank, precisions in grid.svd_points:
        for p in precisions:
            out.add("factorize (SVD only)", f"f{rank}-svd-{p}", steps=["factorize", "quantize"],
                    factorize={"rank": rank}, quantize={"default": p})
    int2 = uniform_ratio(exported, "int2")
    for target in grid.targets:
        at, budget, quantize = {}, fp32 / target, {"budget_ratio": target}
        if target <= int2:
            at["mixed precision"] = out.add("mixed precision", f"mixed-{target:g}x", quantize=quantize)
        ratio = prune_ratio_for(tables, budget)
        if ratio is not None:
            at["pruning"] = out.add("pruning", f"prune{ratio:g}-{target:g}x", steps=["prune", "quantize"],
                                    prune={"method": "frequency", "scope": "global", "ratio": ratio},
                                    quantize=quantize)
        rank = rank_for(tables, budget)
        if rank is not None:
            method, suffix, config = factorize(rank)
            at["factorize"] = out.add(method, f"f{rank}{suffix}-{target:g}x", steps=["factorize", "quantize"],
                                      factorize=config, quantize=quantize)
        out.equal[target] = at
    return out


def fine_tune_of(config: str, epochs: int) -> dict[str, Any]:
    """The fine-tuning of the scenario config's factorized variant, for `epochs` epochs."""
    variant = next(v for v in read_toml(config)["compress"]["variants"] if "factorize" in v.get("steps", ()))
    return {**variant["factorize"]["fine_tune"], "epochs": epochs}


def interval(d: PairedDifference) -> str:
    return f"{d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"


class Paired:
    """AUC(b) - AUC(a) on the same test rows with a 95% paired bootstrap interval, each pair computed
    once (the per-variant table, the headline and the equal-bytes table ask for the same ones)."""

    def __init__(self, y: np.ndarray, logits: dict[str, np.ndarray], rounds: int) -> None:
        self.y, self.logits, self.rounds = y, logits, rounds
        self._done: dict[tuple[str, str], PairedDifference] = {}

    def __call__(self, a: str, b: str) -> PairedDifference:
        if (a, b) not in self._done:
            self._done[a, b] = paired_auc_difference(self.y, self.logits[a], self.logits[b], rounds=self.rounds)
        return self._done[a, b]


def vs_fp32(rows: dict[str, VariantRow], paired: Paired) -> None:
    """Every variant's bytes, ratio, AUC and AUC difference to fp32 with its paired interval."""
    print(f"\n== every variant: delta AUC vs fp32 [95% paired bootstrap, {paired.rounds} rounds, "
          f"{paired.y.size:,} test rows] ==")
    for r in sorted(rows.values(), key=lambda r: r.ratio):
        if r.variant != "fp32":
            print(f"  {r.variant:<18}{r.bytes:>14,} bytes {r.ratio:>7.2f}x  AUC {r.value:.4f}  "
                  f"{interval(paired('fp32', r.variant))}")


def vs_control(beyond: Beyond, rows: dict[str, VariantRow], paired: Paired) -> None:
    """Each fine-tuned factorized variant's AUC difference to the teacher fine-tuned the same way (the
    compression's own cost, the extra training taken out), with its paired interval."""
    print(f"\n== fine-tuned variants minus {CONTROL} (the teacher trained the same extra epoch, fp32 tables: "
          f"AUC {rows[CONTROL].value:.4f}, {interval(paired('fp32', CONTROL))} vs fp32) ==")
    for r in sorted(rows.values(), key=lambda r: r.ratio):
        if beyond.method[r.variant] == "factorize":
            print(f"  {r.variant:<18}{r.ratio:>7.2f}x  {interval(paired(CONTROL, r.variant))}")


TRAINED = ("factorize", "fp32 fine-tuned")  # the methods whose variants train (the fine-tuning's extra epoch)


def headline(beyond: Beyond, rows: dict[str, VariantRow], paired: Paired) -> None:
    """The most accurate variant at >= HEADLINE_RATIO x, its AUC difference to fp32 with a paired
    bootstrap interval, and whether it meets the goal; if it trained, the most accurate one without
    training likewise, and every trained variant there minus the teacher trained the same way."""
    over = [r for r in rows.values() if r.ratio >= HEADLINE_RATIO]
    if not over:
        print(f"no variant reaches {HEADLINE_RATIO:g}x")
        return

    def best_line(label: str, best: VariantRow) -> str:
        d = paired("fp32", best.variant)
        verdict = ("meets" if d.delta >= -HEADLINE_LOSS else "misses") + f" the goal (delta >= -{HEADLINE_LOSS})"
        bound = "its whole interval is above" if d.low >= -HEADLINE_LOSS else "its interval reaches below"
        return (f"{label} at >= {HEADLINE_RATIO:g}x: {best.variant}, {best.bytes:,} bytes ({best.ratio:.2f}x), "
                f"AUC {best.value:.4f}, delta vs fp32 {interval(d)} (95% paired bootstrap, {paired.rounds} rounds, "
                f"{paired.y.size:,} test rows): {verdict}; {bound} -{HEADLINE_LOSS}")

    best = max(over, key=lambda r: r.value)
    print("\n" + best_line("best", best))
    if beyond.method[best.variant] not in TRAINED:
        return
    untrained = [r for r in over if beyond.method[r.variant] not in TRAINED]
    print(best_line("best without training", max(untrained, key=lambda r: r.value)) if untrained
          else f"no variant without training reaches {HEADLINE_RATIO:g}x")
    if CONTROL in rows:
        print(f"trained at >= {HEADLINE_RATIO:g}x minus {CONTROL} (the extra epoch taken out): " + "; ".join(
            f"{r.variant} {interval(paired(CONTROL, r.variant))}"
            for r in sorted(over, key=lambda r: r.ratio) if beyond.method[r.variant] in TRAINED))


def equal_bytes(beyond: Beyond, rows: dict[str, VariantRow], paired: Paired) -> None:
    """Per target ratio, each method's bytes and AUC difference to fp32 (paired intervals), the winner
    and its paired margin over the runner-up; then which method wins where, in words."""
    methods = ("mixed precision", "pruning", "factorize")
    print("\n== equal bytes: delta AUC vs fp32 [95% paired bootstrap], each method at the same budget ==")
    print(f"{'target':>7}" + "".join(f"{m:>44}" for m in methods) + "   winner (margin over the runner-up)")
    wins: list[tuple[float, str]] = []
    for target, at in beyond.equal.items():
        cells = ""
        for m in methods:
            name = at.get(m)
            if name is None:
                cells += f"{'cannot reach':>44}"
                continue
            d = paired("fp32", name)
            cells += f"{f'{rows[name].ratio:.1f}x {interval(d)}':>44}"
        ranked = sorted(at.values(), key=lambda n: -rows[n].value)
        if len(ranked) < 2:
            wins.append((target, beyond.method[ranked[0]] if ranked else "none"))
            print(f"{target:>6g}x{cells}   {wins[-1][1]} (alone)")
            continue
        margin = paired(ranked[1], ranked[0])
        first, second = beyond.method[ranked[0]], beyond.method[ranked[1]]
        winner = first if margin.low > 0 else f"tie {first}/{second}"
        wins.append((target, winner))
        print(f"{target:>6g}x{cells}   {winner} ({interval(margin)})")
    print("in words: " + "; ".join(f"{w} at {', '.join(f'{t:g}x' for t, v in wins if v == w)}"
                                   for w in dict.fromkeys(v for _, v in wins))
          + " (a tie: the runner-up's paired interval reaches 0)")


def plot_methods(beyond: Beyond, rows: dict[str, VariantRow], path: Path, title: str) -> None:
    """Delta AUC vs compression ratio (log), one colour per method, the Pareto front joined; the whole
    range on the left, the goal's neighbourhood on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from bandit.tradeoff import pareto_front

    named = [r for r in rows.values() if r.variant != "fp32"]
    front = pareto_front(np.array([r.value for r in named]), np.array([r.bytes for r in named]))
    front_rows = sorted((named[i] for i in front), key=lambda r: r.ratio)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, low in ((axes[0], None), (axes[1], -4 * HEADLINE_LOSS)):
        for method in dict.fromkeys(beyond.method[r.variant] for r in named):
            pts = [r for r in named if beyond.method[r.variant] == method]
            ax.scatter([r.ratio for r in pts], [r.delta for r in pts], label=method, s=22)
        ax.plot([r.ratio for r in front_rows], [r.delta for r in front_rows], "-", color="grey", lw=0.8,
                label="Pareto front")
        ax.axhline(-HEADLINE_LOSS, ls="--", color="red", lw=0.7, label=f"-{HEADLINE_LOSS} AUC")
        ax.axvline(HEADLINE_RATIO, ls=":", color="red", lw=0.7)
        ax.set_xscale("log")
        ax.set_xticks([2.0 ** k for k in range(1, 8)])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("fewer embedding bytes than fp32 (log)")
        ax.set_ylabel("AUC - fp32 AUC")
        if low is not None:
            ax.set_ylim(low, HEADLINE_LOSS)
            ax.set_xlim(8, 128)
            for r in named:
                if low <= r.delta <= HEADLINE_LOSS and r.ratio >= 8:
                    ax.annotate(r.variant, (r.ratio, r.delta), fontsize=6, xytext=(3, 2), textcoords="offset points")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


ADDED = "added"  # <out>/added: the grid's variants an earlier run's <out>/variants lacks, beside their own fp32


def reuse_or_add(title: str, exported: ExportedModel, dataset, beyond: Beyond, scale: Scale,
                 out: Path) -> tuple[dict[str, VariantRow], dict[str, Path], dict[str, VariantRow]]:
    """With variants stored in `out`: read them, and build the grid's variants they lack into
    <out>/added (all of those again if <out>/added lacks one; timed against that run's own fp32).
    Each variant's row, the run folder holding it, and the fp32 row it was timed against."""
    batch, latency = max(scale.beyond_latency.batch_sizes), replace(scale, latency=scale.beyond_latency)
    stored = run_rows(out, batch_size=batch)
    print(f"\n== {title} (variants stored in {out}) ==\n{format_table(stored)}")
    missing = [v for v in beyond.variants if v["name"] not in {r.variant for r in stored}]
    added: list[VariantRow] = []
    if missing:
        have = {p.name for p in (out / ADDED / "variants").glob("*")}
        if {v["name"] for v in missing} <= have:
            added = [r for r in run_rows(out / ADDED, batch_size=batch) if r.variant in have]
            print(f"\n== {title}: added variants stored in {out / ADDED} ==\n{format_table(added)}")
        else:
            added = run_part(f"{title}: added variants", exported, dataset, missing, latency, out / ADDED)
    folder = {r.variant: out for r in stored} | {r.variant: out / ADDED for r in added if r.variant != "fp32"}
    rows = {r.variant: r for r in stored} | {r.variant: r for r in added if r.variant != "fp32"}
    base = {n: next(r for r in (stored if f == out else added) if r.variant == "fp32") for n, f in folder.items()}
    return rows, folder, base


def beyond_part(title: str, exported: ExportedModel, dataset, fine_tune: dict[str, Any], scale: Scale, grid: Grid,
                out: Path, reuse: bool = False, tuned: tuple[int, ...] | None = None) -> None:
    """Part 5 for one teacher: build and measure `grid`'s variants (or, with `reuse`, read the variants
    stored by an earlier run and build only those it lacks), then every variant's paired delta, the
    headline, equal bytes, QPS and the plot."""
    beyond = beyond_variants(exported, fine_tune, tuned, grid)
    if reuse and (out / "variants" / "fp32").is_dir():
        rows, folder, base = reuse_or_add(title, exported, dataset, beyond, scale, out)
    else:
        measured = run_part(title, exported, dataset, beyond.variants, replace(scale, latency=scale.beyond_latency),
                            out)
        rows, folder = {r.variant: r for r in measured}, {r.variant: out for r in measured}
        base = {n: rows["fp32"] for n in rows}
    beyond.method["fp32"] = "fp32"
    y, logits = test_logits(out, dataset, [n for n, f in folder.items() if f == out])
    if any(f != out for f in folder.values()):
        logits |= test_logits(out / ADDED, dataset, [n for n, f in folder.items() if f != out])[1]
    paired = Paired(y, logits, scale.bootstrap_rounds)
    vs_fp32(rows, paired)
    if CONTROL in rows:
        vs_control(beyond, rows, paired)
    headline(beyond, rows, paired)
    equal_bytes(beyond, rows, paired)
    size = scale.beyond_latency.batch_sizes[0]
    print(f"\nQPS at batch {size} (rows/s on the serving path, compression.latency), factorized vs the fp32 TBE "
          f"({rows['fp32'].qps:,.0f} rows/s; added variants vs the fp32 timed beside them):")
    for r in rows.values():
        if beyond.method[r.variant].startswith("factorize"):
            print(f"  {r.variant:<16}{r.qps:>12,.0f} rows/s  {r.qps / base[r.variant].qps:.2f}x fp32   "
                  f"p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms")
    plot_methods(beyond, rows, out / "beyond.png", title)
    print(f"wrote {out / 'beyond.png'}")


MIXED_DIMS, MIXED_DIM_PRECISION = (32, 16, 8, 4), "int4"
MIXED_DIM_TARGETS = (16.0, 24.0, 32.0)  # where a width per table may beat one rank for all


def mixed_dim_variants(exported: ExportedModel, fine_tune: dict[str, Any]) -> dict[float, dict[str, Any]]:
    """At each of MIXED_DIM_TARGETS that int4 rows can reach: mixed_dim (widths by access frequency,
    fine-tuned) then int4."""
    tables, fp32 = float_tables(exported.model), float_bytes(exported.model)
    out = {}
    for target in MIXED_DIM_TARGETS:
        config = MixedDimConfig(budget_ratio=target, dims=MIXED_DIMS)
        options = widths(config, tables, MIXED_DIM_PRECISION)
        if sum(width_bytes(tables[n], o[-1], MIXED_DIM_PRECISION) for n, o in options.items()) <= fp32 / target:
            out[target] = {"name": f"md-{target:g}x", "steps": ["mixed_dim", "quantize"],
                           "mixed_dim": {"budget_ratio": target, "dims": list(MIXED_DIMS), "fine_tune": fine_tune},
                           "quantize": {"default": MIXED_DIM_PRECISION}}
    return out


def mixed_dim_part(title: str, exported: ExportedModel, dataset, fine_tune: dict[str, Any], scale: Scale,
                   out: Path, beyond_out: Path, reuse: bool = False, tuned: tuple[int, ...] | None = None) -> None:
    """mixed_dim at each reachable target, against the beyond part's factorized variant at the same
    target (stored in `beyond_out`): both deltas vs fp32 and their paired difference."""
    variants = mixed_dim_variants(exported, fine_tune)
    if reuse and (out / "variants" / "fp32").is_dir():
        measured = run_rows(out, batch_size=max(scale.beyond_latency.batch_sizes))
        print(f"\n== {title} (variants stored in {out}) ==\n{format_table(measured)}")
    else:
        measured = run_part(title, exported, dataset, list(variants.values()),
                            replace(scale, latency=scale.beyond_latency), out)
    rows = {r.variant: r for r in measured}
    factorized = {t: at["factorize"] for t, at in beyond_variants(exported, fine_tune, tuned).equal.items()
                  if t in variants}
    y, mine = test_logits(out, dataset, list(rows))
    _, theirs = test_logits(beyond_out, dataset, list(factorized.values()))
    print("\n== mixed_dim vs factorize at equal bytes: delta AUC [95% paired bootstrap] ==")
    for target, config in variants.items():
        md, f = config["name"], factorized[target]
        vs_fp32 = paired_auc_difference(y, mine["fp32"], mine[md], rounds=scale.bootstrap_rounds)
        vs_f = paired_auc_difference(y, theirs[f], mine[md], rounds=scale.bootstrap_rounds)
        widths_chosen = read_manifest(out / "variants" / md)["notes"]["mixed_dim"]["widths"]
        print(f"{target:>5g}x  {md} {rows[md].ratio:.1f}x vs fp32 {interval(vs_fp32)};  minus {f}: {interval(vs_f)};  "
              f"widths {widths_chosen}")


ENSEMBLES = {"seeds": ("dlrm-seed1", "dlrm-seed2"), "dcn": ("dcn-seed0",)}  # members bench/distill_teachers.py exports
ENSEMBLE_RANK, ENSEMBLE_QUANTIZE = 4, {"int4": {"default": "int4"}, "32x": {"budget_ratio": HEADLINE_RATIO}}


def ensemble_variants(fine_tune: dict[str, Any], members: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Per ensemble of ENSEMBLES (the teacher averaged with the members stored in `members`), the beyond
    part's rank-4 variants (int4, and mixed precision at 32x) fine-tuned from it by `fine_tune`:
    {label: {suffix: variant config}}; UserError naming the first missing member."""
    missing = [m for ms in ENSEMBLES.values() for m in ms if not (members / m / "model").is_dir()]
    if missing:
        raise UserError(f"--members: {members / missing[0] / 'model'} is missing (run bench/distill_teachers.py "
                        f"--parts ensemble with this teacher first)")
    return {label: {suffix: {"name": f"f{ENSEMBLE_RANK}-{label}-{suffix}", "steps": ["factorize", "quantize"],
                             "factorize": {"rank": ENSEMBLE_RANK, "fine_tune": {
                                 **fine_tune, "ensemble": [str(members / m / "model") for m in folders]}},
                             "quantize": quantize}
                    for suffix, quantize in ENSEMBLE_QUANTIZE.items()}
            for label, folders in ENSEMBLES.items()}


def ensemble_part(title: str, exported: ExportedModel, dataset, fine_tune: dict[str, Any], members: Path,
                  scale: Scale, out: Path, beyond_out: Path, reuse: bool = False) -> None:
    """The beyond part's rank-4 variants (int4, and mixed precision at 32x), fine-tuned from each
    ensemble teacher instead of the teacher alone (same seed, batches and test rows), side by side
    with the single-teacher ones stored in `beyond_out`: each delta vs fp32 and the paired gain."""
    configs = ensemble_variants(fine_tune, members)
    names = {label: {suffix: c["name"] for suffix, c in by.items()} for label, by in configs.items()}
    variants = [c for by in configs.values() for c in by.values()]
    if reuse and (out / "variants" / "fp32").is_dir():
        measured = run_rows(out, batch_size=max(scale.beyond_latency.batch_sizes))
        print(f"\n== {title} (variants stored in {out}) ==\n{format_table(measured)}")
    else:
        measured = run_part(title, exported, dataset, variants, replace(scale, latency=scale.beyond_latency), out)
    rows = {r.variant: r for r in measured}
    singles = {suffix: f"f{ENSEMBLE_RANK}-{suffix}" for suffix in ENSEMBLE_QUANTIZE}
    y, mine = test_logits(out, dataset, list(rows))
    _, theirs = test_logits(beyond_out, dataset, list(singles.values()))
    rounds = scale.bootstrap_rounds
    print(f"\n== rank {ENSEMBLE_RANK} fine-tuned from the teacher alone vs from an ensemble: delta AUC vs fp32 "
          f"[95% paired bootstrap, {rounds} rounds, {y.size:,} test rows] ==")
    for suffix, single in singles.items():
        alone = paired_auc_difference(y, mine["fp32"], theirs[single], rounds=rounds)
        print(f"{suffix:>5}  teacher alone: {single} {interval(alone)}")
        for label, by in names.items():
            name = by[suffix]
            d = paired_auc_difference(y, mine["fp32"], mine[name], rounds=rounds)
            gain = paired_auc_difference(y, theirs[single], mine[name], rounds=rounds)
            bound = "above" if d.low >= -HEADLINE_LOSS else "reaches below"
            print(f"{'':>7}ensemble {label:<6} {name} {rows[name].ratio:.2f}x {interval(d)} (interval {bound} "
                  f"-{HEADLINE_LOSS});  minus the teacher alone's: {interval(gain)}")


def dataset_of(exported: ExportedModel):
    experiment = exported.meta["experiment"]
    return load_dataset(from_dict(DataConfig, experiment["data"], "data"), experiment["seed"])


def teacher(config: str, out: Path, *sets: str) -> ExportedModel:
    """Train (or reuse) the DLRM teacher of a scenario config through the project's CLI, into `out`
    (the config's own variants are left out: this bench builds its own list)."""
    name = load_config(config).name
    folder = out / name / "dlrm" / "model"
    if not folder.exists():
        overrides = [f'out_dir="{out}"', "compress.variants=[]", *sets]
        subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", config,
                        *[a for s in overrides for a in ("--set", s)]], check=True)
    return load_model(folder)


def _zipf_ids(rng: np.random.Generator, rows: int, n: int) -> torch.Tensor:
    """Zipf(1.1) ranks mapped through a fixed random permutation, so hot rows are scattered."""
    ranks = (rng.zipf(1.1, n) - 1) % rows
    return torch.from_numpy(rng.permutation(rows)[ranks] if rows <= 4_000_000 else (ranks * 2654435761) % rows)


def large_tables(scale: Scale, out: Path, device: torch.device, num_tables: int = 8, dim: int = 64,
                 pooling: int = 8) -> None:
    """QPS of the fp32 TBE vs fp16/int8/int4/int2 on tables far larger than the CPU cache (on `device`)."""
    rows = int(scale.large_bytes / (num_tables * dim * 4))
    rng = np.random.default_rng(0)
    feats = [f"f{i}" for i in range(num_tables)]
    batches = {}
    for size in scale.large_latency.batch_sizes:
        batches[size] = [KeyedJaggedTensor.from_lengths_sync(
            keys=feats, values=torch.cat([_zipf_ids(rng, rows, size * pooling) for _ in feats]),
            lengths=torch.full((num_tables * size,), pooling, dtype=torch.int32)).to(device) for _ in range(4)]
    ebcs, sizes = {}, {}
    for precision in ("fp32", "fp16", "int8", "int4", "int2"):
        packed = []
        for i, f in enumerate(feats):
            weight = torch.randn(rows, dim, generator=torch.Generator().manual_seed(i)) * 0.05
            table = FloatTable("ebc", f"t_{f}", (f,), "SUM", rows, weight)
            packed.append(pack(table, precision, clip_search=False, cache=None))  # random tables: nothing to reuse
            del weight
        ebcs[precision] = build_quant_ebc(packed, device)
        sizes[precision] = tbe_bytes(ebcs[precision])
        del packed
    stats = measure({p: e for p, e in ebcs.items()}, batches, scale.large_latency, device)
    print(f"\n== large tables: {num_tables} x {rows:,} rows x dim {dim}, {pooling} Zipf ids per bag, "
          f"{sizes['fp32'] / 1e9:.2f} GB at fp32, {device}, {torch.get_num_threads()} threads ==")
    head = f"{'precision':<10}{'bytes':>16}{'ratio':>8}" + "".join(
        f"{f'p50@{b}':>11}{f'p99@{b}':>11}{f'QPS@{b}':>13}{'xfp32':>7}" for b in batches)
    lines = [head]
    for p, per in stats.items():
        cells = "".join(f"{s.p50_ms:>11.3f}{s.p99_ms:>11.3f}{s.qps:>13,.0f}{s.qps / stats['fp32'][b].qps:>6.2f}x"
                        for b, s in per.items())
        lines.append(f"{p:<10}{sizes[p]:>16,}{sizes['fp32'] / sizes[p]:>7.2f}x{cells}")
    print("\n".join(lines))
    (out / f"large_tables_dim{dim}.csv").write_text("\n".join(
        ["precision,bytes,batch_size,p50_ms,p95_ms,p99_ms,qps,qps_vs_fp32,threads"]
        + [f"{p},{sizes[p]},{b},{s.p50_ms},{s.p95_ms},{s.p99_ms},{s.qps},{s.qps / stats['fp32'][b].qps},{s.threads}"
           for p, per in stats.items() for b, s in per.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=None, help="exported MovieLens DLRM folder (default: train "
                        "configs/movielens_compress.toml's teacher)")
    parser.add_argument("--out", default="runs/bench_compression")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tune-ranks", default=None, help="beyond parts: fine-tune only these factorize ranks "
                        "(comma-separated; the others SVD only), e.g. 4 on a loaded machine; default: all")
    parser.add_argument("--reuse", action="store_true", help="beyond parts: analyse the variants an earlier run "
                        "stored, building only those it lacks (into <out>/added)")
    parser.add_argument("--members", default="runs/distill_teachers", help="beyond_ensemble: the folder "
                        "bench/distill_teachers.py exported the ensemble members to")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads here and in the "
                        "teachers' training (default: torch's); 1 on a loaded machine: with 2 threads on 2 busy "
                        "cores, int4 clip search ran 6.6x slower (each op waits for both threads to be scheduled)")
    parser.add_argument("--device", default="cpu", help="where the large-table part runs: cpu or cuda")
    parser.add_argument("--parts", default="movielens,synthetic,criteo_like,large,beyond",
                        help="comma-separated: movielens, synthetic, criteo_like, large, beyond, "
                        "beyond_mixed_dim (after beyond: compared with its factorized variants), beyond_ensemble "
                        "(after beyond: its rank-4 variants fine-tuned from ensemble teachers), beyond_criteo")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    scale, out, parts = (QUICK if args.quick else FULL), Path(args.out).resolve(), args.parts.split(",")
    tuned = tuple(int(r) for r in args.tune_ranks.split(",")) if args.tune_ranks else None
    out = out.with_name(out.name + "_quick") if args.quick else out  # teachers are reused from `out`
    out.mkdir(parents=True, exist_ok=True)
    if args.threads is not None:
        if args.threads < 1:
            sys.exit(f"error: --threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    threads = [f"train.threads={args.threads}"] if args.threads else []
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    try:
        if "movielens" in parts:
            exported = load_model(args.teacher) if args.teacher else teacher(ML_CONFIG, out, *threads)
            run_part("MovieLens-100k DLRM, dim 64", exported, dataset_of(exported),
                     variant_configs(exported, ML_CONFIG, scale), scale,
                     out / "movielens")
        if "synthetic" in parts:
            exported = teacher(SYNTHETIC_CONFIG, out, f"data.synthetic.num_rows={scale.synthetic_rows}", *threads)
            run_part("synthetic DLRM, dim 64", exported, dataset_of(exported),
                     variant_configs(exported, SYNTHETIC_CONFIG, scale), scale,
                     out / "synthetic")
        if "criteo_like" in parts:
            exported = teacher(CRITEO_LIKE_CONFIG, out, f"data.criteo_like.num_rows={scale.criteo_like_rows}",
                               "baselines.logistic=false", *threads)
            dataset = dataset_of(exported)
            run_part("Criteo-like log, 26 tables, DLRM dim 64", exported, dataset, mixed_vs_uniform(exported),
                     scale, out / "criteo_like")
            paired_comparison(out / "criteo_like", dataset, [("int4", "mixed-int4-bytes"),
                                                             ("int4", "mixed-int4-bytes-loss"),
                                                             ("int2", "mixed-int2-bytes"),
                                                             ("int2", "mixed-int2-bytes-loss")])
        if "beyond" in parts:
            exported = load_model(args.teacher) if args.teacher else teacher(ML_CONFIG, out, *threads)
            beyond_part("MovieLens-100k DLRM dim 64, beyond quantization", exported, dataset_of(exported),
                        fine_tune_of(ML_CONFIG, scale.fine_tune_epochs), scale, GRID, out / "beyond_movielens",
                        args.reuse, tuned)
        if "beyond_mixed_dim" in parts:
            exported = load_model(args.teacher) if args.teacher else teacher(ML_CONFIG, out, *threads)
            mixed_dim_part("MovieLens-100k DLRM dim 64, mixed_dim", exported, dataset_of(exported),
                           fine_tune_of(ML_CONFIG, scale.fine_tune_epochs), scale, out / "beyond_movielens_md",
                           out / "beyond_movielens", args.reuse, tuned)
        if "beyond_ensemble" in parts:
            exported = load_model(args.teacher) if args.teacher else teacher(ML_CONFIG, out, *threads)
            ensemble_part("MovieLens-100k DLRM dim 64, rank 4 fine-tuned from ensembles", exported,
                          dataset_of(exported), fine_tune_of(ML_CONFIG, scale.fine_tune_epochs), Path(args.members),
                          scale, out / "beyond_movielens_ensemble", out / "beyond_movielens", args.reuse)
        if "beyond_criteo" in parts:
            exported = teacher(CRITEO_LIKE_CONFIG, out, f"data.criteo_like.num_rows={scale.criteo_like_rows}",
                               "baselines.logistic=false", *threads)
            beyond_part("Criteo-like log, 26 tables, DLRM dim 64, beyond quantization", exported,
                        dataset_of(exported), {**fine_tune_of(ML_CONFIG, 1), "batch_size": 2048}, scale, BIG_GRID,
                        out / "beyond_criteo_like", args.reuse, tuned)
        if "large" in parts:
            for dim in (64, 128):
                large_tables(scale, out, torch.device(args.device), dim=dim)
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
