"""The variants table and CSV carry the conversion head's AUC and delta from the manifests of a
multi-task model's variants, and stay as they were for one-headed models."""
from __future__ import annotations

import csv

import pytest

from compression.report import format_table, manifest_row, write_csv


def _manifest(name: str, metrics: dict) -> dict:
    return {"name": name, "size": {"total": 1000, "ratio_vs_fp32": 4.0}, "metrics": metrics,
            "latency": {"100": {"p50_ms": 1.0, "p99_ms": 2.0, "qps": 5e4}}}


TWO_HEADS = {"auc": 0.75, "delta_auc": -0.001, "conversion_auc": 0.68, "delta_conversion_auc": -0.004}


@pytest.mark.parametrize("conversion", [True, False])
def test_conversion_columns_only_when_a_variant_has_them(tmp_path, conversion):
    metrics = TWO_HEADS if conversion else {"auc": 0.75, "delta_auc": -0.001}
    rows = [manifest_row(_manifest("int8", metrics))]
    table = format_table(rows)
    assert ("conv auc" in table) == conversion
    assert ("0.6800   -0.0040" in table) == conversion
    write_csv(rows, tmp_path / "v.csv")
    with open(tmp_path / "v.csv") as f:
        row = next(csv.DictReader(f))
    if conversion:
        assert (float(row["conversion_auc"]), float(row["conversion_delta"])) == (0.68, -0.004)
    else:
        assert not any(k.startswith("conversion") for k in row)
