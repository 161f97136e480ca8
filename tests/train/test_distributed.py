"""Two gloo processes under torchrun: tables land on both ranks, the run learns like one process,
and the exported (gathered) model scores exactly like the sharded one did."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from recsys.app.config import load_config
from recsys.data.sources import load_dataset
from recsys.metrics.ctr import ctr_metrics
from recsys.serving.export import load_model
from recsys.serving.scorer import ModelScorer

SHARDED = """
[train.sharding]
default = "table_wise"
tables = { t_user_id = "column_wise", t_item_id = "column_wise" }
column_shard_dim = 8
"""
FAST = ["--set", "two_tower.enabled=false", "--set", "baselines.logistic=false",
        "--set", "dlrm.model.embedding_dim=16", "--set", "dlrm.model.dense_arch=[16]"]


def _run(args: list[str]) -> dict:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_process_run_shards_on_both_ranks_and_matches_one_process(tiny_config) -> None:
    one = tiny_config("one", SHARDED)
    two = tiny_config("two", SHARDED)
    _run([sys.executable, "-m", "recsys.app.cli", "run", str(one), *FAST, "--set", "dlrm.optim.batch_size=256"])
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    _run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "recsys.app.cli", "run", str(two), *FAST,
          "--set", "dlrm.optim.batch_size=128"])
    runs = one.parent / "runs"
    single = json.loads((runs / "one" / "metrics.json").read_text())["models"]["dlrm"]
    sharded = json.loads((runs / "two" / "metrics.json").read_text())["models"]["dlrm"]

    placements = sharded["placements"]
    assert set().union(*(set(ranks) for _, ranks in placements.values())) == {0, 1}
    assert placements["t_user_id"] == ["column_wise", [0, 1]]
    assert {kind for kind, _ in placements.values()} == {"table_wise", "column_wise"}
    assert sharded["history"][-1]["val_auc"] > 0.6  # it learned: a random model scores 0.5
    assert abs(sharded["history"][-1]["val_auc"] - single["history"][-1]["val_auc"]) < 0.01

    exported = load_model(runs / "two" / "dlrm" / "model")
    config = load_config(two)
    dataset = load_dataset(config.data, config.seed)
    scorer = ModelScorer(exported.model)
    batches = list(dataset.batches("test", 4096))
    logits = torch.cat([scorer.score(b) for b in batches])
    labels = torch.cat([b.labels for b in batches])
    auc = ctr_metrics(labels, logits, from_logits=True).auc
    assert auc == pytest.approx(sharded["test"]["auc"], abs=1e-6)
