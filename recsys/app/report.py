"""A run's reports from its metrics.json content: report.md and a self-contained report.html
(the simulation's verdict first, when there is one; then training, variants and learning curves)
and the learning-curve PNG."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from recsys.app.document import Block, Heading, Image, Table, Text, markdown, to_html  # noqa: E402
from recsys.atomic import write_bytes, write_text  # noqa: E402

RANKING_COLUMNS = ("auc", "log_loss", "ne", "calibration")


def write_results(results: dict, run_dir: Path) -> None:
    """metrics.json and the reports, each written atomically."""
    write_text(run_dir / "metrics.json", json.dumps(results, indent=1))
    write_run_report(results, run_dir)


def write_run_report(results: dict, run_dir: Path) -> Path:
    """Write curves.png, report.md and report.html into run_dir (atomically); returns report.md's path."""
    trained = {n: m for n, m in results["models"].items() if m.get("history")}
    if trained:
        plot_curves(trained, run_dir / "curves.png")
    simulation = results.get("simulation") or {}
    blocks = _verdict(simulation, results["name"]) if "verdict" in simulation else []
    blocks += [Heading(f"Run `{results['name']}` (seed {results['seed']})", 2 if blocks else 1),
               Text(_provenance_line(results["provenance"]))]
    blocks += _ranking_table(results["models"]) + _retrieval_table(results["models"])
    blocks += _variants_table(results.get("variants", []))
    if trained:
        blocks += [Heading("Learning curves"), Image("curves.png", "learning curves")]
    for name, m in trained.items():
        blocks += [Heading(f"{name}: sharding", 3), Table(["table", "type", "ranks"], [
            [t, sharding, str(ranks)] for t, (sharding, ranks) in m.get("placements", {}).items()])]
    blocks = [b for b in blocks if not isinstance(b, Image) or (run_dir / b.path).exists()]
    path = run_dir / "report.md"
    write_text(path, markdown(blocks))
    write_text(run_dir / "report.html", to_html(blocks, run_dir, f"recsys run {results['name']}"))
    return path


def _verdict(simulation: dict, name: str) -> list[Block]:
    """The simulation's verdict and its reasons, with its plots."""
    from simulator.report import PLOTS
    from simulator.verdict import Verdict

    verdict = Verdict.from_dict(simulation["verdict"])
    header, rows = verdict.table()
    log = simulation.get("log")
    blocks: list[Block] = [Heading(f"`{name}`: {verdict.headline()}", 1), Table(header, rows),
                           *(Text(r) for r in verdict.reasons()),
                           Text(f"{simulation['requests']:,} requests, {simulation['clicks']:,} clicks, "
                                f"{simulation['abandoned']:,} abandoned (simulation/results.json, "
                                "simulation/report.md).")]
    if log:
        blocks.append(Text(f"Logged impressions: {log['impressions']:,} from {log['requests']:,} requests served "
                           f"by {log['variant']} (epsilon {log['epsilon']:g}), with propensities, in simulation/log/."))
    plots = {**PLOTS, "variants.png": "offline accuracy of the compressed variants vs bytes and vs p99"}
    return blocks + [Image(f"simulation/{f}", alt) for f, alt in plots.items()]


def plot_curves(models: dict, path: Path) -> None:
    fig, axes = plt.subplots(2, len(models), figsize=(4.5 * len(models), 6.5), squeeze=False)
    for col, (name, m) in enumerate(models.items()):
        epochs = [r["epoch"] for r in m["history"]]
        axes[0][col].plot(epochs, [r["train_loss"] for r in m["history"]], marker="o")
        axes[0][col].set(title=f"{name}: train loss", xlabel="epoch")
        key = f"val_{m['primary']}"
        axes[1][col].plot(epochs, [r[key] for r in m["history"]], marker="o", color="tab:green")
        axes[1][col].set(title=f"{name}: validation {m['primary']}", xlabel="epoch")
        if m.get("tested_epoch"):
            axes[1][col].axvline(m["tested_epoch"], color="grey", linestyle="--", label="tested epoch")
            axes[1][col].legend(loc="lower right", fontsize=8)
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, png.getvalue())


def _provenance_line(p: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
    return f"Device: {p['device']} x{p['world_size']} processes, {p['threads']} threads; {versions}; git {p['git']}."


def _ranking_table(models: dict) -> list[Block]:
    rows = {n: m["test"] for n, m in models.items() if m["task"] == "ranking"}
    if not rows:
        return []
    return [Heading("Ranking (test split)"), Table(["model", *RANKING_COLUMNS], [
        [n, *(f"{t[c]:.4f}" for c in RANKING_COLUMNS)] for n, t in rows.items()])]


def _retrieval_table(models: dict) -> list[Block]:
    rows = {n: m["test"] for n, m in models.items() if m["task"] == "retrieval"}
    if not rows:
        return []
    cols = [c for c in next(iter(rows.values())) if c.startswith(("recall@", "ndcg@"))]
    return [Heading("Retrieval (test split, full catalogue, train items excluded)"),
            Table(["model", *cols], [[n, *(f"{t[c]:.4f}" for c in cols)] for n, t in rows.items()])]


def _variants_table(rows: list[dict]) -> list[Block]:
    """The compressed variants (rows of compression.report.VariantRow as dicts, their speed-up over
    the fp32 baseline in words as compression.report.speed gives it; "-" in rows recorded without one)."""
    from compression.latency import SERVING_CANDIDATES
    from compression.report import SPEED_NOTE, speed

    if not rows:
        return []
    metric, batch = rows[0]["metric"], rows[0]["batch_size"]
    conversion = any(math.isfinite(r.get("conversion_auc", math.nan)) for r in rows)
    return [Heading("Compressed variants (test split)"),
            Table(["variant", "bytes", "ratio", metric, "delta", *(["conv auc", "conv delta"] if conversion else []),
                   "p50 ms", "p99 ms", "vs fp32", f"QPS@{batch}"], [
                [r["variant"], f"{r['bytes']:,}", f"{r['ratio']:.2f}x", f"{r['value']:.4f}", f"{r['delta']:+.4f}",
                 *([f"{r['conversion_auc']:.4f}", f"{r['conversion_delta']:+.4f}"] if conversion else []),
                 f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
                 speed(*(r.get(k, math.nan) for k in ("speedup", "speedup_low", "speedup_high"))),
                 f"{r['qps']:,.0f}"] for r in rows]),
            Text(f"Latency: {batch} rows per call"
                 + (" (one request's candidates)" if batch == SERVING_CANDIDATES else "")
                 + f"; {SPEED_NOTE}."),
            Image("variants/variants.png", "variants: accuracy vs bytes and vs p99, Pareto front ringed")]
