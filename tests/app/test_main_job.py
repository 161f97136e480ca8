"""The main job end to end on a tiny config: every artefact written, consistent and reloadable."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tomllib

from recsys.app.config import ExperimentConfig, load_config
from recsys.config_loading import from_dict
from recsys.data.sources import load_dataset
from recsys.metrics.retrieval import retrieval_metrics
from recsys.serving.export import load_model


@pytest.mark.slow
def test_main_job_writes_a_complete_consistent_run(tiny_config) -> None:
    path = tiny_config("e2e")
    proc = subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = path.parent / "runs" / "e2e"
    config = load_config(path)

    resolved = from_dict(ExperimentConfig, tomllib.loads((run / "config.toml").read_text()))
    assert resolved == config
    results = json.loads((run / "metrics.json").read_text())
    assert set(results["models"]) == {"dlrm", "logistic", "popularity", "two_tower", "popularity_retrieval"}
    assert results["provenance"]["versions"]["torchrec"] == "1.8.0"
    assert results["models"]["dlrm"]["history"][-1]["val_auc"] > 0.6
    report = (run / "report.md").read_text()
    assert all(f"| {name} |" in report for name in results["models"])
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for model in ("dlrm", "logistic", "two_tower"):
        lines = (run / model / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == len(results["models"][model]["history"])

    exported = load_model(run / "two_tower" / "model")
    data = load_dataset(config.data, config.seed).retrieval("test")
    users = exported.model.embed(data.user_features, "user")
    items = exported.model.embed(data.item_features, "item")
    found = retrieval_metrics(users, items, data.positives, data.exclude, ks=(10,))[10]
    assert found.recall == pytest.approx(results["models"]["two_tower"]["test"]["recall@10"], abs=1e-9)
    assert found.ndcg == pytest.approx(results["models"]["two_tower"]["test"]["ndcg@10"], abs=1e-9)


@pytest.mark.slow
@pytest.mark.network
def test_main_job_trains_on_and_serves_the_movielens_truth(tiny_config) -> None:
    extra = ("\n[simulator]\nnum_requests = 2048\nbatch_requests = 1024\ncandidates = 20\nslate_size = 5\n"
             "[simulator.latency]\np50_ms = [5.0, 2.0]\np99_ms = [20.0, 8.0]\n")
    path = tiny_config("mlt", extra)
    sets = ["--set", 'data.synthetic.truth="movielens"', "--set", "two_tower.enabled=false"]
    proc = subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", str(path), *sets],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = path.parent / "runs" / "mlt"
    exported = load_model(run / "dlrm" / "model")
    sizes = {f.name: f.num_embeddings for f in exported.schema.sparse}
    assert (sizes["user_id"], sizes["item_id"]) == (943, 1682)  # MovieLens's users and items, not the config's
    simulation = json.loads((run / "simulation" / "results.json").read_text())
    assert [v["variant"] for v in simulation["variants"]] == ["dlrm", "logistic"]
    assert simulation["requests"] == 2048


@pytest.mark.slow
def test_main_job_on_a_generated_criteo_log_with_large_tables(tiny_config) -> None:
    """26 Criteo tables of 20,000 rows: the planner shards them table-wise with FBGEMM's fused
    kernel (which refuses dims not divisible by 4: the logistic baseline once crashed here), and
    the DLRM is compressed with mixed precision over all 26 tables."""
    extra = ('\n[compress]\nteacher = "dlrm"\nlatency = { batch_sizes = [64], repeats = 1, iters = 2, warmup = 1 }\n'
             '[[compress.variants]]\nname = "mixed"\nquantize = { budget_ratio = 3.5, sensitivity_batches = 2 }\n')
    path = tiny_config("cl", extra)
    sets = ["--set", 'data.source="criteo_like"', "--set", "data.criteo_like.num_rows=12000",
            "--set", "data.criteo_like.max_cardinality=200", "--set", "data.criteo.num_embeddings=[20000]",
            "--set", "two_tower.enabled=false", "--set", "baselines.popularity=false",
            "--set", "baselines.logistic_optim={batch_size=256, epochs=3, lr_sparse=0.1}"]
    proc = subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", str(path), *sets],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = path.parent / "runs" / "cl"
    results = json.loads((run / "metrics.json").read_text())
    assert set(results["models"]) == {"dlrm", "logistic"}
    assert results["models"]["logistic"]["test"]["auc"] > 0.55
    placements = results["models"]["logistic"]["placements"]
    assert "table_wise" in {kind for kind, _ in placements.values()}, placements
    manifest = json.loads((run / "variants" / "mixed" / "manifest.json").read_text())
    assert len(manifest["size"]["tables"]) == 26
    assert manifest["size"]["ratio_vs_fp32"] >= 3.5
