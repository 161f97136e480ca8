"""The trade-off at a glance: one row per variant (bytes, ratio, accuracy, latency) as a table,
a CSV and a PNG of accuracy vs bytes and accuracy vs p99 latency with the Pareto front marked.
A multi-task DLRM's variants also carry the conversion head's AUC (on clicked rows) and its delta:
two more columns of the table and the CSV, there only when some row has them."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from bandit.tradeoff import pareto_front
from compression.latency import SERVING_CANDIDATES
from compression.variant import read_manifest
from recsys.atomic import write_bytes, write_text
from recsys.serving.paired import Ratio


@dataclass(frozen=True)
class VariantRow:
    variant: str
    bytes: int
    ratio: float
    metric: str  # "auc", or "recall@K" for two-tower
    value: float
    delta: float
    p50_ms: float
    p99_ms: float
    qps: float
    batch_size: int  # of the latency columns
    speedup: float = float("nan")  # over the fp32 baseline at batch_size (compression.latency; > 1: faster)
    speedup_low: float = float("nan")  # its 95% interval; nan: not measured (CUDA)
    speedup_high: float = float("nan")
    conversion_auc: float = float("nan")  # a multi-task model's conversion head; nan: none
    conversion_delta: float = float("nan")

    @property
    def has_conversion(self) -> bool:
        return not np.isnan(self.conversion_auc)

    @property
    def speed(self) -> str:
        """The speed-up and what its interval says: '1.19x faster', '0.98x same', '0.90x slower'
        ('faster'/'slower' only when the interval excludes 1); the ratio alone without an interval."""
        return speed(self.speedup, self.speedup_low, self.speedup_high)


def speed(speedup: float, low: float, high: float) -> str:
    """A speed-up over fp32 in words: see VariantRow.speed; '-' when not measured."""
    if np.isnan(speedup):
        return "-"
    if np.isnan(low):
        return f"{speedup:.2f}x"
    return f"{speedup:.2f}x {Ratio(speedup, low, high).verdict()}"


def manifest_row(manifest: dict[str, Any], batch_size: int | None = None) -> VariantRow:
    """A manifest's row; latency at `batch_size` (default: one request's candidates, the serving
    batch, where measured; else the largest batch measured)."""
    metrics, latency = manifest["metrics"], manifest.get("latency") or {}
    metric = "auc" if "auc" in metrics else next(k for k in metrics if k.startswith("recall@"))
    size = batch_size if batch_size is not None else default_batch(int(b) for b in latency)
    stats = latency.get(str(size), {})
    nan = float("nan")
    return VariantRow(manifest["name"], manifest["size"]["total"], manifest["size"]["ratio_vs_fp32"], metric,
                      metrics[metric], metrics.get(f"delta_{metric}", nan), stats.get("p50_ms", nan),
                      stats.get("p99_ms", nan), stats.get("qps", nan), size, stats.get("speedup", nan),
                      stats.get("speedup_low", nan), stats.get("speedup_high", nan),
                      conversion_auc=metrics.get("conversion_auc", nan),
                      conversion_delta=metrics.get("delta_conversion_auc", nan))


def default_batch(sizes: Iterable[int]) -> int:
    """The serving batch (SERVING_CANDIDATES rows) if measured, else the largest size; 0 if none."""
    measured = sorted(sizes)
    return SERVING_CANDIDATES if SERVING_CANDIDATES in measured else (measured[-1] if measured else 0)


def run_rows(run_dir: Path | str, batch_size: int | None = None) -> list[VariantRow]:
    """Rows of every variant stored under <run_dir>/variants (temporary folders skipped), fp32 first."""
    folders = sorted(p for p in (Path(run_dir) / "variants").glob("*") if p.is_dir() and not p.name.startswith("."))
    return sorted((manifest_row(read_manifest(p), batch_size) for p in folders),
                  key=lambda r: (r.variant != "fp32", -r.bytes))


SPEED_NOTE = ("vs fp32: the fp32 baseline's CPU time per call over the variant's, median of paired rounds "
              "(faster/slower: its 95% interval excludes 1)")


def format_table(rows: Sequence[VariantRow]) -> str:
    """A fixed-width text table: variant, bytes, ratio, metric, delta, (the conversion head's AUC
    and delta, when some row has them), p50, p99, the p50 speed-up over fp32, rows/s; the latency
    batch in a line below."""
    metric = rows[0].metric if rows else "auc"
    batch = rows[0].batch_size if rows else 0
    conversion = any(r.has_conversion for r in rows)
    head = (f"{'variant':<22}{'bytes':>12}{'ratio':>8}{metric:>10}{'delta':>10}"
            + (f"{'conv auc':>10}{'delta':>10}" if conversion else "")
            + f"{'p50 ms':>9}{'p99 ms':>9}{'vs fp32':>14}{'rows/s':>12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.variant:<22}{r.bytes:>12,}{r.ratio:>7.2f}x{r.value:>10.4f}{r.delta:>+10.4f}"
                     + (f"{r.conversion_auc:>10.4f}{r.conversion_delta:>+10.4f}" if conversion else "")
                     + f"{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}{r.speed:>14}{r.qps:>12,.0f}")
    lines.append(f"latency: {batch} rows per call" + (" (one request's candidates, the serving batch)"
                                                      if batch == SERVING_CANDIDATES else "") + "; " + SPEED_NOTE)
    return "\n".join(lines)


def write_csv(rows: Iterable[VariantRow], path: Path | str) -> None:
    rows = list(rows)
    names = [fl.name for fl in fields(VariantRow)]
    if not any(r.has_conversion for r in rows):
        names = [n for n in names if not n.startswith("conversion_")]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    write_text(Path(path), text.getvalue())


LABEL_PT = 7  # font size of the point labels


def label_boxes(anchors: Sequence[tuple[float, float]], widths: Sequence[float],
                height: float) -> list[float]:
    """Label bottoms (display units) so no two labels overlap: each sits right of its anchor at the
    anchor's height, raised just above any already placed label it would cover (lowest first)."""
    placed: list[tuple[float, float, float]] = []  # x0, x1, bottom
    bottoms = [0.0] * len(anchors)
    for i in sorted(range(len(anchors)), key=lambda i: anchors[i][1]):
        x0, x1, y = anchors[i][0], anchors[i][0] + widths[i], anchors[i][1]
        while clash := [b for a0, a1, b in placed if x0 < a1 and a0 < x1 and abs(y - b) < height - 1e-6]:
            y = max(clash) + height
        placed.append((x0, x1, y))
        bottoms[i] = y
    return bottoms


def _annotate(ax, names: Sequence[str], points: Sequence[tuple[float, float]]) -> None:
    """Variant names beside their points (left of those near the right edge), moved apart with a
    leader line where they would collide."""
    ax.figure.canvas.draw()  # fixes the axes' transform
    px, right = ax.figure.dpi / 72, ax.get_window_extent().x1
    at = [ax.transData.transform(p) for p in points]
    widths = [0.62 * LABEL_PT * px * len(n) for n in names]
    anchors = [(x + 3 * px if x + 3 * px + w < right else x - 3 * px - w, y + 3 * px) for (x, y), w in zip(at, widths)]
    bottoms = label_boxes(anchors, widths, 1.3 * LABEL_PT * px)
    for name, point, (x, y), (ax_, ay), bottom in zip(names, points, at, anchors, bottoms):
        ax.annotate(name, point, xytext=((ax_ - x) / px, (bottom - y) / px), textcoords="offset points",
                    fontsize=LABEL_PT, arrowprops=dict(arrowstyle="-", lw=0.4, color="grey") if bottom > ay else None)


def plot(rows: Sequence[VariantRow], path: Path | str, title: str = "") -> None:
    """PNG with accuracy vs bytes and accuracy vs p99, Pareto-optimal variants joined and ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, attr, label in ((axes[0], "bytes", "embedding bytes (log)"), (axes[1], "p99_ms", "p99 ms per batch")):
        points = [(getattr(r, attr), r.value) for r in rows]
        cost, value = np.array([p[0] for p in points]), np.array([p[1] for p in points])
        front = sorted(pareto_front(value, cost).tolist(), key=lambda i: points[i][0])
        ax.scatter(*zip(*points), color="tab:blue")
        ax.margins(x=0.08, y=0.1)  # room for the labels right of and above the points
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "o-", color="tab:red",
                mfc="none", ms=12, label="Pareto front")
        ax.set_xlabel(label + (f" (batch {rows[0].batch_size})" if attr == "p99_ms" and rows else ""))
        ax.set_ylabel(rows[0].metric if rows else "")
        ax.legend()
        if attr == "bytes":
            ax.set_xscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    for ax, attr in zip(axes, ("bytes", "p99_ms")):
        _annotate(ax, [r.variant for r in rows], [(getattr(r, attr), r.value) for r in rows])
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    write_bytes(Path(path), png.getvalue())
