"""The trade-off report: Pareto front, table, CSV and PNG from stored manifests."""
from __future__ import annotations

import csv

from compression.report import VariantRow, format_table, pareto_front, plot, write_csv


def _row(name: str, size: int, auc: float, p99: float) -> VariantRow:
    return VariantRow(name, size, 1000 / size, "auc", auc, auc - 0.78, p99 / 2, p99, 4096 / p99, 4096)


def test_pareto_front_keeps_only_undominated_points():
    points = [(100, 0.78), (50, 0.779), (50, 0.775), (20, 0.77), (30, 0.769), (20, 0.77)]
    assert pareto_front(points) == [0, 1, 3, 5]


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
