"""A run killed mid-training resumes from its last checkpoint and ends exactly where an
uninterrupted run ends; a checkpoint from another config is refused."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAST = ["--set", "two_tower.enabled=false", "--set", "baselines.logistic=false",
        "--set", "data.synthetic.num_rows=6000", "--set", "dlrm.optim.epochs=3", "--set", "train.checkpoint_every=10"]


def _cli(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "recsys.app.cli", "run", str(config), *FAST, *extra]


def _kill_after_first_checkpoint(cmd: list[str], checkpoints: Path) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step-*/meta.json")):
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_killed_run_resumes_to_identical_metrics(tiny_config) -> None:
    full, killed = tiny_config("full"), tiny_config("killed")
    runs = full.parent / "runs"
    subprocess.run(_cli(full), check=True, capture_output=True)
    _kill_after_first_checkpoint(_cli(killed), runs / "killed" / "dlrm" / "checkpoints")
    assert not (runs / "killed" / "metrics.json").exists()
    subprocess.run(_cli(killed), check=True, capture_output=True)

    a = json.loads((runs / "full" / "metrics.json").read_text())["models"]["dlrm"]
    b = json.loads((runs / "killed" / "metrics.json").read_text())["models"]["dlrm"]
    assert a["test"] == b["test"]
    strip = lambda h: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert len(b["history"]) == 3


@pytest.mark.slow
def test_checkpoint_of_another_config_is_refused(tiny_config) -> None:
    config = tiny_config("changed")
    subprocess.run(_cli(config, "--set", "dlrm.optim.epochs=1"), check=True, capture_output=True)
    proc = subprocess.run(_cli(config, "--set", "dlrm.optim.lr_dense=0.5"), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "written by a different config" in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_moving_the_data_cache_keeps_the_checkpoints(tiny_config) -> None:
    config = tiny_config("moved")
    metrics = config.parent / "runs" / "moved" / "metrics.json"
    subprocess.run(_cli(config, "--set", "dlrm.optim.epochs=1"), check=True, capture_output=True)
    first = json.loads(metrics.read_text())["models"]["dlrm"]
    moved = f'data.cache_dir="{config.parent / "elsewhere"}"'
    proc = subprocess.run(_cli(config, "--set", "dlrm.optim.epochs=1", "--set", moved), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads(metrics.read_text())["models"]["dlrm"]
    assert again["test"] == first["test"] and len(again["history"]) == 1
