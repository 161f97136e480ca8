"""The run report's variants table: the same speed-up over fp32 as the compress table, and a
multi-task model's conversion AUC (columns only when a variant has one)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from compression.report import run_rows
from compression.variant import FORMAT, MANIFEST
from recsys.app.report import write_run_report

PROVENANCE = {"device": "cpu", "world_size": 1, "threads": 1, "versions": {}, "git": "x"}


def write_manifest(folder: Path, name: str, p50: dict[int, float], speedup: tuple[float, float, float] = (1, 1, 1),
                   **metrics: float) -> None:
    folder.mkdir(parents=True)
    latency = {str(b): {"p50_ms": ms, "p99_ms": 2 * ms, "qps": b / ms * 1e3, "speedup": speedup[0],
                        "speedup_low": speedup[1], "speedup_high": speedup[2]} for b, ms in p50.items()}
    (folder / MANIFEST).write_text(json.dumps({
        "format": FORMAT, "name": name, "size": {"total": 1000, "ratio_vs_fp32": 1.0},
        "metrics": {"auc": 0.78, "delta_auc": 0.0, **metrics}, "latency": latency}))


def variants_rows(report: Path) -> dict[str, list[str]]:
    lines = report.read_text().split("## Compressed variants (test split)\n\n")[1].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:] if line.startswith("|")]
    return {row[0]: dict(zip(header, row)) for row in rows}  # type: ignore[misc]


def test_the_variants_table_shows_each_variants_speedup_over_fp32(tmp_path):
    write_manifest(tmp_path / "variants" / "fp32", "fp32", {1: 0.1, 100: 0.4})
    write_manifest(tmp_path / "variants" / "int8", "int8", {1: 0.2, 100: 0.32}, (1.25, 1.1, 1.3))
    write_manifest(tmp_path / "variants" / "int4", "int4", {1: 0.2, 100: 0.5}, (0.8, 0.7, 1.01))
    rows = [asdict(r) for r in run_rows(tmp_path)]
    rows.append({**rows[-1], "variant": "recorded-before"})
    del rows[-1]["speedup"]  # a metrics.json written before the column existed
    write_run_report({"name": "t", "seed": 0, "provenance": PROVENANCE, "models": {}, "variants": rows}, tmp_path)
    table = variants_rows(tmp_path / "report.md")
    assert {name: row["vs fp32"] for name, row in table.items()} == {
        "fp32": "1.00x same", "int8": "1.25x faster", "int4": "0.80x same", "recorded-before": "-"}
    assert table["int8"]["p50 ms"] == "0.320" and table["int8"]["QPS@100"] == "312,500"
    assert "Latency: 100 rows per call (one request's candidates)" in (tmp_path / "report.md").read_text()
    assert "conv auc" not in table["fp32"]  # a one-headed run's table is unchanged


def test_a_multi_task_runs_variants_table_shows_the_conversion_heads_auc(tmp_path):
    write_manifest(tmp_path / "variants" / "fp32", "fp32", {100: 0.4}, conversion_auc=0.67, delta_conversion_auc=0.0)
    write_manifest(tmp_path / "variants" / "int8", "int8", {100: 0.4}, conversion_auc=0.6651,
                   delta_conversion_auc=-0.0049)
    rows = [json.loads(json.dumps(asdict(r))) for r in run_rows(tmp_path)]  # as metrics.json holds them
    write_run_report({"name": "t", "seed": 0, "provenance": PROVENANCE, "models": {}, "variants": rows}, tmp_path)
    table = variants_rows(tmp_path / "report.md")
    assert (table["int8"]["conv auc"], table["int8"]["conv delta"]) == ("0.6651", "-0.0049")
    assert (table["fp32"]["conv auc"], table["int8"]["auc"]) == ("0.6700", "0.7800")
