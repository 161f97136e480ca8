"""CUDA path: the main job trains on the GPU (NCCL group of one) and matches CPU quality.
Skipped where there is no CUDA device."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_training_on_cuda_learns_like_cpu(tiny_config) -> None:
    results = {}
    for device in ("cpu", "cuda"):
        path = tiny_config(f"on_{device}")
        subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", str(path), "--set",
                        f'train.device="{device}"', "--set", "two_tower.enabled=false"], check=True)
        metrics = json.loads((path.parent / "runs" / f"on_{device}" / "metrics.json").read_text())
        results[device] = metrics
    assert results["cuda"]["provenance"]["device"].startswith("cuda")
    auc = {d: results[d]["models"]["dlrm"]["test"]["auc"] for d in results}
    assert abs(auc["cuda"] - auc["cpu"]) < 0.02
