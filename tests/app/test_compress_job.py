"""`recsys run` with [compress] and [simulator]: variants built, listed, reloaded and served as arms;
`recsys compress` refuses bad input in one line and leaves the stored variants as they were."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from compression.variant import load_variant, read_manifest
from recsys.app.config import load_config
from recsys.data.sources import load_dataset
from recsys.metrics.ctr import auc
from tests.conftest import SIMULATOR, TINY, cli, refused

EXTRA = """
[compress]
teacher = "dlrm"
latency = { batch_sizes = [64, 512], repeats = 2, iters = 3, warmup = 1 }

[[compress.variants]]
name = "int8"
quantize = { default = "int8" }

[[compress.variants]]
name = "pruned-int4"
steps = ["prune", "quantize"]
prune = { ratio = 0.6, fallback = "mean" }
quantize = { default = "int4" }

""" + SIMULATOR


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """(config path, run folder) of a finished tiny run with variants and a simulation."""
    tmp = tmp_path_factory.mktemp("compress_job")
    config = tmp / "cv.toml"
    config.write_text(TINY.format(name="cv", out=tmp / "runs", cache=tmp / "cache")
                      .replace("[baselines]", "[baselines]\nlogistic = false\npopularity = false")
                      + "\n[two_tower]\nenabled = false\n" + EXTRA)
    proc = cli("run", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return config, tmp / "runs" / "cv"


@pytest.mark.slow
def test_run_builds_measures_and_serves_every_variant(run) -> None:
    config_path, run_dir = run
    names = ["fp32", "int8", "pruned-int4"]
    manifests = {n: read_manifest(run_dir / "variants" / n) for n in names}
    fp32, int8, pruned = (manifests[n]["size"]["total"] for n in names)
    assert pruned < int8 < fp32 / 2.5  # dim 8: an int8 row is 8 bytes + 4 of scale/bias against 32
    assert manifests["int8"]["size"]["ratio_vs_fp32"] == pytest.approx(fp32 / int8)
    assert set(manifests["int8"]["latency"]) == {"64", "512"}
    teacher = manifests["int8"]["teacher"]  # provenance: the run the teacher came from
    assert teacher["experiment"] == load_config(config_path).to_dict() and "auc" in teacher["test"]

    results = json.loads((run_dir / "metrics.json").read_text())
    summary = {r["variant"]: r for r in results["variants"]}
    assert set(summary) == set(names)
    with open(run_dir / "variants" / "variants.csv") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    for n in names:
        assert int(rows[n]["bytes"]) == summary[n]["bytes"] == manifests[n]["size"]["total"]
    assert (run_dir / "variants" / "variants.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Compressed variants" in (run_dir / "report.md").read_text()

    config = load_config(config_path)  # the stored AUC, recomputed from the reloaded variant
    scorer = load_variant(run_dir / "variants" / "int8")
    logits, labels = [], []
    for batch in load_dataset(config.data, config.seed).batches("test", 4096):
        keep = batch.labels >= 0
        logits.append(scorer.score(batch)[keep])
        labels.append(batch.labels[keep])
    found = auc(torch.cat(labels).numpy(), torch.cat(logits).numpy())
    assert found == pytest.approx(manifests["int8"]["metrics"]["auc"], abs=1e-6)

    simulation = json.loads((run_dir / "simulation" / "results.json").read_text())
    assert [v["variant"] for v in simulation["variants"]] == ["dlrm", "dlrm-int8", "dlrm-pruned-int4"]
    assert sum(v["served"] for v in simulation["variants"]) == simulation["requests"]


@pytest.mark.slow
def test_variants_command_lists_the_run(run) -> None:
    config_path, run_dir = run
    for target in (str(run_dir), str(config_path)):
        proc = cli("variants", target, "--batch-size", "64")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert "vs fp32" in lines[1] and lines[-1].startswith("latency: 64 rows per call")
        assert [line.split()[0] for line in lines[3:-1]] == ["fp32", "int8", "pruned-int4"]


ONE_VARIANT_LATENCY = ("simulator.latency.p50_ms=[5.0, 2.0]", "simulator.latency.p99_ms=[20.0, 8.0]")  # dlrm + 1


@pytest.mark.slow
@pytest.mark.parametrize("sets, fragment", [
    (['compress.variants=[{name="x", quantize={tables={t_nope="int8"}}}]'], "quantize.tables.t_nope: no such table"),
    (['compress.variants=[{name="x", quantize={default="bf16"}}]'], "bf16"),
    (['compress.variants=[{name="x", steps=["quantize"], quantize={budget_ratio=1000.0}}]', *ONE_VARIANT_LATENCY],
     "budget_ratio: 1000.0x cannot be met"),
    (["data.synthetic.num_rows=30000"], "trained with a different `data`"),
    (["dlrm.model.over_arch=[32, 1]"], "trained with a different `dlrm.model`"),
    (['compress.teacher="two_tower"'], "compress.teacher"),
    (['name="never_ran"'], "no exported dlrm model; run `recsys run` first"),
    pytest.param(['compress.device="cuda"'], "compress.device: 'cuda' asked for, but torch sees no CUDA",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")),
])
def test_bad_compress_input_is_one_line_and_changes_nothing(capsys, run, sets, fragment) -> None:
    """In process (the command's own subprocess refusals: tests/reliability/test_files_cli.py); every
    file and folder of the run, a temporary one included, is checked unchanged."""
    config_path, run_dir = run
    err = refused(capsys, ["compress", str(config_path), *[a for s in sets for a in ("--set", s)]], run_dir)
    assert err.startswith("error: ") and fragment in err


@pytest.mark.slow
def test_corrupt_variant_stops_the_simulation_in_one_line(run) -> None:
    config_path, run_dir = run
    weights = run_dir / "variants" / "int8" / "weights.pt"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[: len(original) // 2])
        proc = cli("simulate", str(config_path))
        assert proc.returncode == 2 and "checksum does not match" in proc.stderr and proc.stderr.count("\n") == 1
    finally:
        weights.write_bytes(original)


def test_variants_of_a_run_without_variants_is_one_line(tmp_path: Path) -> None:
    proc = cli("variants", str(tmp_path))
    assert proc.returncode == 2 and "no variants; run `recsys compress CONFIG` first" in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_compress_replaces_the_variant_set_whole(run, tmp_path: Path) -> None:
    config_path, run_dir = run
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    proc = cli("compress", str(config_path), "--set", f'out_dir="{tmp_path / "runs"}"',
               "--set", 'compress.variants=[{name="fp16", quantize={default="fp16"}}]',
               *[a for s in ONE_VARIANT_LATENCY for a in ("--set", s)],
               "--set", "compress.latency.batch_sizes=[64]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (copy / "variants").iterdir()) == ["fp16", "fp32", "variants.csv", "variants.png"]
    manifest = read_manifest(copy / "variants" / "fp16")
    assert {t["precision"] for t in manifest["tables"].values()} == {"fp16"}
    assert read_manifest(run_dir / "variants" / "int8")  # the original run is untouched
