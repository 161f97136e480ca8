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

    python bench/compression_bench.py          # full (~25 min on 2 cores)
    python bench/compression_bench.py --quick  # smoke run
    python bench/compression_bench.py --parts large --device cuda  # large-table QPS on a GPU
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchrec import KeyedJaggedTensor

from compression.build import compress
from compression.config import CompressConfig, TimingConfig
from compression.latency import measure
from compression.report import VariantRow, format_table, plot, run_rows, write_csv
from compression.scorer import build_quant_ebc
from compression.tables import FloatTable, float_tables, pack
from compression.variant import load_variant
from recsys.app.config import load_config
from recsys.config_loading import from_dict, read_toml
from recsys.data.config import DataConfig
from recsys.data.sources import load_dataset
from recsys.errors import UserError
from recsys.metrics.ctr import paired_auc_difference
from recsys.serving.export import ExportedModel, load_model
from recsys.serving.size import fp32_bytes, table_bytes, tbe_bytes

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


FULL = Scale(4, TimingConfig(repeats=5, iters=20, warmup=3), 400_000, 1_000_000, 2.5e9,
             TimingConfig(repeats=5, iters=10, warmup=3))
QUICK = Scale(1, TimingConfig(batch_sizes=(1, 512, 4096), repeats=2, iters=4, warmup=1), 60_000, 100_000, 1e8,
              TimingConfig(repeats=2, iters=4, warmup=1))

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


def paired_comparison(out: Path, dataset, pairs: list[tuple[str, str]]) -> None:
    """AUC(b) - AUC(a) on the same test rows with a 95% paired bootstrap interval."""
    names = sorted({n for pair in pairs for n in pair})
    scorers = {n: load_variant(out / "variants" / n) for n in names}
    logits, labels = {n: [] for n in names}, []
    for batch in dataset.batches("test", 4096):
        labels.append(batch.labels)
        for n, scorer in scorers.items():
            logits[n].append(scorer.score(batch))
    y = torch.cat(labels)
    keep = y >= 0
    for a, b in pairs:
        d = paired_auc_difference(y[keep], torch.cat(logits[a])[keep], torch.cat(logits[b])[keep])
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
            packed.append(pack(table, precision, clip_search=False))
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
    parser.add_argument("--device", default="cpu", help="where the large-table part runs: cpu or cuda")
    parser.add_argument("--parts", default="movielens,synthetic,criteo_like,large")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    scale, out, parts = (QUICK if args.quick else FULL), Path(args.out).resolve(), args.parts.split(",")
    out = out.with_name(out.name + "_quick") if args.quick else out  # teachers are reused from `out`
    out.mkdir(parents=True, exist_ok=True)
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    try:
        if "movielens" in parts:
            exported = load_model(args.teacher) if args.teacher else teacher(ML_CONFIG, out)
            run_part("MovieLens-100k DLRM, dim 64", exported, dataset_of(exported),
                     variant_configs(exported, ML_CONFIG, scale), scale,
                     out / "movielens")
        if "synthetic" in parts:
            exported = teacher(SYNTHETIC_CONFIG, out, f"data.synthetic.num_rows={scale.synthetic_rows}")
            run_part("synthetic DLRM, dim 64", exported, dataset_of(exported),
                     variant_configs(exported, SYNTHETIC_CONFIG, scale), scale,
                     out / "synthetic")
        if "criteo_like" in parts:
            exported = teacher(CRITEO_LIKE_CONFIG, out, f"data.criteo_like.num_rows={scale.criteo_like_rows}",
                               "baselines.logistic=false")
            dataset = dataset_of(exported)
            run_part("Criteo-like log, 26 tables, DLRM dim 64", exported, dataset, mixed_vs_uniform(exported),
                     scale, out / "criteo_like")
            paired_comparison(out / "criteo_like", dataset, [("int4", "mixed-int4-bytes"),
                                                             ("int4", "mixed-int4-bytes-loss"),
                                                             ("int2", "mixed-int2-bytes"),
                                                             ("int2", "mixed-int2-bytes-loss")])
        if "large" in parts:
            for dim in (64, 128):
                large_tables(scale, out, torch.device(args.device), dim=dim)
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
