"""`recsys check` refuses per-table pruning that makes a variant bigger than not pruning (a pruned
table's remap costs 4 bytes per id), in one line naming the key; pruning that pays, and pruning
whose precisions or scope are chosen later from the data, pass."""
from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from recsys.app.cli import main

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"
VARIANTS = tomllib.loads(QUICKSTART.read_text())["compress"]["variants"]
PRUNED = next(i for i, v in enumerate(VARIANTS) if "prune" in v.get("steps", ()))
QUICKSTART_PRUNE = 'prune = { method = "frequency", ratio = 0.5, fallback = "mean" }'


def _check(capsys, tmp_path: Path, prune: str, quantize: str = 'quantize = { default = "int4" }') -> tuple[int, str]:
    text = QUICKSTART.read_text()
    assert QUICKSTART_PRUNE in text and 'quantize = { default = "int4" }' in text
    path = tmp_path / "config.toml"
    path.write_text(text.replace(QUICKSTART_PRUNE, prune).replace('quantize = { default = "int4" }', quantize))
    status = main(["check", str(path)])
    return status, capsys.readouterr().err


def test_the_quickstart_pruning_pays(capsys, tmp_path: Path) -> None:
    assert _check(capsys, tmp_path, QUICKSTART_PRUNE)[0] == 0


def test_pruning_too_few_int4_rows_is_refused_with_the_bytes_it_costs(capsys, tmp_path: Path) -> None:
    """At ratio 0.3 the quickstart's int4 tables (12-byte rows) grow by their 4-byte-per-id remap: the
    extra bytes are those pruning_saves counts over the run's tables (checked against the TBEs in
    tests/compression/test_prune.py)."""
    from compression.prune import pruning_saves
    from recsys.app.config import load_config
    from recsys.data.sources import planned_schema

    status, err = _check(capsys, tmp_path, 'prune = { method = "frequency", ratio = 0.3, fallback = "mean" }')
    schema = planned_schema(load_config(QUICKSTART).data)
    extra = -sum(pruning_saves(f.num_embeddings, 16, "int4", 0.3, "mean") for f in schema.sparse)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"error: compress.variants[{PRUNED}].prune.ratio: pruning makes the variant's "
                          f"tables {extra:,} bytes bigger than not pruning")


@pytest.mark.parametrize("prune,quantize", [
    ('prune = { ratio = 0.3, scope = "global" }', 'quantize = { default = "int4" }'),  # per table: the data's
    ('prune = { ratio = 0.3 }', 'quantize = { budget_ratio = 6.0 }'),  # precisions: the sensitivities'
    ('prune = { ratio = 0.3 }', 'quantize = { default = "int8" }'),  # 20-byte rows: 0.3 of them pay
])
def test_pruning_the_data_decides_or_that_pays_passes(capsys, tmp_path: Path, prune: str, quantize: str) -> None:
    status, err = _check(capsys, tmp_path, prune, quantize)
    assert status == 0, err
