"""`recsys run` resumes an interrupted run at the stage it was in: a training or a compression
finished for this config is reused (one line each), an unfinished or changed one is redone, and
--force redoes everything."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys.app.cli import main
from recsys.app.config import load_config
from recsys.app.stages import finished_compression, finished_training, read_metrics

TRAINED = "training: done, reused (use --force to redo)"
COMPRESSED = "compression: done, reused (use --force to redo)"


def _stamps(run_dir: Path) -> dict[str, int]:
    """Modification times of the files each stage writes."""
    paths = ["dlrm/model/model.pt", "logistic/model/model.pt", "variants/fp32/manifest.json",
             "variants/int8/manifest.json"]
    return {p: (run_dir / p).stat().st_mtime_ns for p in paths if (run_dir / p).exists()}


def _run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> str:
    """`recsys run CONFIG ARGS` in process (no interpreter and torch start-up per run); its stdout."""
    capsys.readouterr()
    status = main(["run", str(config), *args])
    out, err = capsys.readouterr()
    assert status == 0, err[-3000:]
    return out


@pytest.mark.slow
def test_a_finished_run_reuses_training_and_compression(capsys, run_copy) -> None:
    config, run_dir = run_copy
    before = _stamps(run_dir)
    (run_dir / "simulation" / "results.json").unlink()
    out = _run(capsys, config)
    assert out.splitlines()[:2] == [TRAINED, COMPRESSED]
    assert _stamps(run_dir) == before  # nothing of either stage rewritten
    assert (run_dir / "simulation" / "results.json").exists()  # the last stage ran
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["variant"] for r in metrics["variants"]] == ["fp32", "int8"] and "simulation" in metrics


@pytest.mark.slow
def test_an_interrupted_compression_is_redone_after_reused_training(capsys, run_copy) -> None:
    config, run_dir = run_copy
    before = _stamps(run_dir)
    shutil.rmtree(run_dir / "variants")  # interrupted before the variant set was stored
    out = _run(capsys, config)
    assert TRAINED in out and COMPRESSED not in out
    after = _stamps(run_dir)
    assert {p: after[p] for p in after if "variants" not in p} == {p: before[p] for p in before if "variants" not in p}
    assert (run_dir / "variants" / "int8" / "manifest.json").exists()


@pytest.mark.slow
def test_a_changed_compress_section_is_redone(capsys, run_copy) -> None:
    config, run_dir = run_copy
    out = _run(capsys, config, "--set", 'compress.variants=[{name="int4", quantize={default="int4"}}]')
    assert TRAINED in out and COMPRESSED not in out
    assert sorted(p.name for p in (run_dir / "variants").iterdir() if p.is_dir()) == ["fp32", "int4"]


@pytest.mark.slow
def test_an_interrupted_training_is_resumed_not_reused(capsys, run_copy) -> None:
    config, run_dir = run_copy
    metrics = json.loads((run_dir / "metrics.json").read_text())
    shutil.rmtree(run_dir / "logistic" / "model")  # interrupted after the DLRM was exported
    out = _run(capsys, config)
    assert TRAINED not in out and COMPRESSED not in out  # a new teacher export: the variants are redone
    again = json.loads((run_dir / "metrics.json").read_text())
    for model in ("dlrm", "logistic"):  # resumed from the last checkpoints: the same models
        assert again["models"][model]["test"] == metrics["models"][model]["test"]


@pytest.mark.slow
def test_force_redoes_every_stage(capsys, run_copy) -> None:
    config, run_dir = run_copy
    before = _stamps(run_dir)
    out = _run(capsys, config, "--force")
    assert TRAINED not in out and COMPRESSED not in out
    after = _stamps(run_dir)
    assert all(after[p] != before[p] for p in before)


@pytest.mark.slow
@pytest.mark.parametrize("override, training, compression", [
    ({}, True, True),
    ({"simulator.num_requests": 999, "simulator.seed": 4}, True, True),  # only the last stage changes
    ({"data.cache_dir": "/elsewhere"}, True, True),  # where data is cached is no part of a run
    ({"compress.latency.batch_sizes": [20, 64]}, True, False),
    ({"compress.variants": [{"name": "int8", "quantize": {"default": "int4"}}]}, True, False),
    ({"dlrm.optim.epochs": 3}, False, False),
    ({"baselines.logistic": False}, False, False),
    ({"seed": 4}, False, False),
])
def test_what_counts_as_finished(finished_run, override, training, compression) -> None:
    path, run_dir = finished_run
    config, stored = load_config(path, override), read_metrics(run_dir)
    assert stored is not None
    assert (finished_training(config, stored) is not None) is training
    assert finished_compression(config, stored) is compression
