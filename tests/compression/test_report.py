"""The trade-off report: Pareto front, table, CSV and PNG from stored manifests."""
from __future__ import annotations

import csv
import json

import numpy as np

from compression.report import VariantRow, default_batch, format_table, label_boxes, plot, run_rows, speed, write_csv


def _row(name: str, size: int, auc: float, p99: float) -> VariantRow:
    return VariantRow(name, size, 1000 / size, "auc", auc, auc - 0.78, p99 / 2, p99, 4096 / p99, 4096)


def test_table_csv_and_png(tmp_path):
    rows = [_row("fp32", 1000, 0.78, 5.0), _row("int8", 300, 0.7799, 4.0), _row("int2", 120, 0.77, 3.9)]
    text = format_table(rows)
    assert text.splitlines()[0].split()[:5] == ["variant", "bytes", "ratio", "auc", "delta"]
    assert "3.33x" in text and "-0.0001" in text
    write_csv(rows, tmp_path / "v.csv")
    with open(tmp_path / "v.csv") as f:
        assert [r["variant"] for r in csv.DictReader(f)] == ["fp32", "int8", "int2"]
    plot(rows, tmp_path / "v.png", "test")
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


def test_labels_of_coincident_points_are_stacked_without_overlap():
    rng = np.random.default_rng(0)
    anchors = [(100.0, 50.0)] * 4 + [(101.0, 52.0), (400.0, 50.0)] + [tuple(p) for p in rng.uniform(0, 200, (20, 2))]
    widths = list(rng.uniform(20, 80, len(anchors)))
    height = 9.0
    bottoms = label_boxes(anchors, widths, height)
    boxes = [(x, x + w, b) for (x, _), w, b in zip(anchors, widths, bottoms)]
    for i, (a0, a1, ab) in enumerate(boxes):
        for c0, c1, cb in boxes[i + 1:]:
            assert not (a0 < c1 and c0 < a1 and abs(ab - cb) < height - 1e-6)
    assert all(b >= y for (_, y), b in zip(anchors, bottoms))  # labels only move up
    assert bottoms[5] == 50.0  # a label with room keeps its place


def _manifest(folder, name: str, size: int, p50: dict[int, float],
              speedups: dict[int, tuple[float, float, float]] | None = None) -> None:
    from compression.variant import FORMAT, MANIFEST

    folder.mkdir(parents=True)
    latency = {str(b): {"p50_ms": ms, "p99_ms": 2 * ms, "qps": b / ms * 1e3} for b, ms in p50.items()}
    for b, (median, low, high) in (speedups or {}).items():
        latency[str(b)].update(speedup=median, speedup_low=low, speedup_high=high)
    (folder / MANIFEST).write_text(json.dumps({
        "format": FORMAT, "name": name, "size": {"total": size, "ratio_vs_fp32": 1000 / size},
        "metrics": {"auc": 0.78, "delta_auc": 0.0}, "latency": latency}))


def test_rows_time_the_serving_batch_and_say_whether_a_variant_is_faster_than_fp32(tmp_path):
    """The speed-up the latency measurement recorded at the row's batch, in words only where its
    interval excludes 1."""
    one = (1.0, 1.0, 1.0)
    _manifest(tmp_path / "variants" / "fp32", "fp32", 1000, {1: 0.1, 100: 0.4, 4096: 4.0},
              {1: one, 100: one, 4096: one})
    _manifest(tmp_path / "variants" / "int8", "int8", 300, {1: 0.2, 100: 0.32, 4096: 5.0},
              {1: (0.97, 0.93, 1.01), 100: (1.19, 1.09, 1.25), 4096: (0.9, 0.85, 0.95)})
    _manifest(tmp_path / "variants" / "int4", "int4", 200, {100: 0.3})  # recorded without a speed-up
    rows = run_rows(tmp_path)
    assert [(r.variant, r.batch_size, r.p50_ms) for r in rows] == [("fp32", 100, 0.4), ("int8", 100, 0.32),
                                                                   ("int4", 100, 0.3)]
    assert [r.speed for r in rows] == ["1.00x same", "1.19x faster", "-"]
    assert [r.speed for r in run_rows(tmp_path, 4096)][:2] == ["1.00x same", "0.90x slower"]
    assert [r.speed for r in run_rows(tmp_path, 1)][:2] == ["1.00x same", "0.97x same"]
    assert speed(1.3, float("nan"), float("nan")) == "1.30x"  # a ratio of p50s (CUDA): no words
    table = format_table(rows)
    assert "1.19x faster" in table.splitlines()[3] and "serving batch" in table.splitlines()[-1]
    assert default_batch([1, 64, 4096]) == 4096 and default_batch([]) == 0
