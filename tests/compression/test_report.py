"""The trade-off report: Pareto front, table, CSV and PNG from stored manifests."""
from __future__ import annotations

import csv
import json

import numpy as np

from compression.report import VariantRow, default_batch, format_table, label_boxes, plot, run_rows, write_csv


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


def _manifest(folder, name: str, size: int, p50: dict[int, float]) -> None:
    from compression.variant import FORMAT, MANIFEST

    folder.mkdir(parents=True)
    latency = {str(b): {"p50_ms": ms, "p99_ms": 2 * ms, "qps": b / ms * 1e3} for b, ms in p50.items()}
    (folder / MANIFEST).write_text(json.dumps({
        "format": FORMAT, "name": name, "size": {"total": size, "ratio_vs_fp32": 1000 / size},
        "metrics": {"auc": 0.78, "delta_auc": 0.0}, "latency": latency}))


def test_rows_time_the_serving_batch_and_show_the_speedup_over_fp32(tmp_path):
    _manifest(tmp_path / "variants" / "fp32", "fp32", 1000, {1: 0.1, 100: 0.4, 4096: 4.0})
    _manifest(tmp_path / "variants" / "int8", "int8", 300, {1: 0.2, 100: 0.32, 4096: 5.0})
    rows = run_rows(tmp_path)
    assert [(r.variant, r.batch_size, r.p50_ms) for r in rows] == [("fp32", 100, 0.4), ("int8", 100, 0.32)]
    assert [r.speedup for r in rows] == [1.0, 0.4 / 0.32]
    assert [r.speedup for r in run_rows(tmp_path, 4096)] == [1.0, 4.0 / 5.0]
    table = format_table(rows)
    assert "1.25x" in table.splitlines()[3] and "serving batch" in table.splitlines()[-1]
    assert default_batch([1, 64, 4096]) == 4096 and default_batch([]) == 0
