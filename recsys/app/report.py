"""report.md and learning-curve PNGs from a run's metrics.json content."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from recsys.atomic import write_bytes, write_text  # noqa: E402

RANKING_COLUMNS = ("auc", "log_loss", "ne", "calibration")


def write_run_report(results: dict, run_dir: Path) -> Path:
    """Write curves.png and report.md into run_dir (atomically); returns the report path."""
    trained = {n: m for n, m in results["models"].items() if m.get("history")}
    if trained:
        plot_curves(trained, run_dir / "curves.png")
    lines = [f"# Run `{results['name']}` (seed {results['seed']})", "",
             _provenance_line(results["provenance"]), ""]
    lines += _ranking_table(results["models"]) + _retrieval_table(results["models"])
    lines += _variants_table(results.get("variants", []))
    if trained:
        lines += ["## Learning curves", "", "![learning curves](curves.png)", ""]
    for name, m in trained.items():
        lines += [f"### {name}: sharding", "", "| table | type | ranks |", "|---|---|---|"]
        lines += [f"| {t} | {sharding} | {ranks} |" for t, (sharding, ranks) in m.get("placements", {}).items()]
        lines.append("")
    path = run_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path


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


def _ranking_table(models: dict) -> list[str]:
    rows = {n: m["test"] for n, m in models.items() if m["task"] == "ranking"}
    if not rows:
        return []
    out = ["## Ranking (test split)", "", "| model | " + " | ".join(RANKING_COLUMNS) + " |",
           "|---" * (len(RANKING_COLUMNS) + 1) + "|"]
    out += [f"| {n} | " + " | ".join(f"{t[c]:.4f}" for c in RANKING_COLUMNS) + " |" for n, t in rows.items()]
    return out + [""]


def _retrieval_table(models: dict) -> list[str]:
    rows = {n: m["test"] for n, m in models.items() if m["task"] == "retrieval"}
    if not rows:
        return []
    cols = [c for c in next(iter(rows.values())) if c.startswith(("recall@", "ndcg@"))]
    out = ["## Retrieval (test split, full catalogue, train items excluded)", "",
           "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    out += [f"| {n} | " + " | ".join(f"{t[c]:.4f}" for c in cols) + " |" for n, t in rows.items()]
    return out + [""]


def _variants_table(rows: list[dict]) -> list[str]:
    """The compressed variants (rows of compression.report.VariantRow as dicts)."""
    if not rows:
        return []
    metric, batch = rows[0]["metric"], rows[0]["batch_size"]
    out = ["## Compressed variants (test split)", "",
           f"| variant | bytes | ratio | {metric} | delta | p50 ms | p99 ms | QPS@{batch} |", "|---" * 8 + "|"]
    out += [f"| {r['variant']} | {r['bytes']:,} | {r['ratio']:.2f}x | {r['value']:.4f} | {r['delta']:+.4f} | "
            f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['qps']:,.0f} |" for r in rows]
    return out + ["", "![variants](variants/variants.png)", ""]
