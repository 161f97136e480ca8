"""Shared fixtures: a tiny synthetic experiment config that trains in seconds, and a finished tiny run
(DLRM, logistic regression, an int8 variant, a simulation) made once per session; tests that change
it work on a copy."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from recsys.app.cli import main

TINY = """
name = "{name}"
seed = 3
out_dir = "{out}"

[data]
source = "synthetic"
cache_dir = "{cache}"

[data.synthetic]
num_users = 300
num_items = 200
num_rows = 24000

[dlrm.model]
embedding_dim = 8
dense_arch = [16, 8]
over_arch = [16, 1]

[dlrm.optim]
batch_size = 256
epochs = 2
lr_dense = 0.005

[two_tower.model]
embedding_dim = 8
tower = [16, 8]

[two_tower.optim]
batch_size = 256
epochs = 2

[baselines]
logistic_optim = {{ batch_size = 256, epochs = 1 }}
"""


@pytest.fixture
def tiny_config(tmp_path: Path):
    """Write a tiny config into tmp_path; returns a function name -> config path."""

    def make(name: str = "tiny", extra: str = "") -> Path:
        path = tmp_path / f"{name}.toml"
        text = TINY.format(name=name, out=tmp_path / "runs", cache=tmp_path / "cache")
        path.write_text(text + extra)
        return path

    return make


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """Every test starts with in-process torch on one thread (an in-process `recsys run` sets the
    machine's count): on a 2-core runner shared with other work, two OpenMP threads spin against
    it (test_factorize's fine-tuning test took 22-29 s at load 3, 0.7 s on one thread). Subprocesses
    and the serving code choose their own counts; tests of thread policies set theirs."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _quiet_libraries():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torchrec.*")
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    logging.disable(logging.WARNING)
    os.environ.setdefault("CI", "true")


SIMULATOR = """
[simulator]
num_requests = 4096
batch_requests = 1024
candidates = 20
slate_size = 5

[simulator.latency]
p50_ms = [5.0, 2.0, 1.5]
p99_ms = [20.0, 8.0, 6.0]
"""  # three arms with fixed latencies: dlrm, logistic and one variant

RUN_EXTRA = """
[two_tower]
enabled = false

[compress]
teacher = "dlrm"
latency = { batch_sizes = [20], repeats = 1, iters = 2, warmup = 1 }

[[compress.variants]]
name = "int8"
quantize = { default = "int8" }

""" + SIMULATOR


def cli(*args: str) -> subprocess.CompletedProcess:
    """`recsys ARGS` in a new process, which starts its own process group (an address an in-process
    test's group left in the environment would be taken)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    return subprocess.run([sys.executable, "-m", "recsys.app.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env)


def write_config(folder: Path, name: str = "fr") -> Path:
    """The finished run's config, writing its run into folder/runs."""
    path = folder / f"{name}.toml"
    text = TINY.format(name=name, out=folder / "runs", cache=folder / "cache")
    path.write_text(text.replace("[baselines]", "[baselines]\npopularity = false") + RUN_EXTRA)
    return path


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """(config path, run folder) of the finished tiny run; do not modify it (see run_copy)."""
    folder = tmp_path_factory.mktemp("finished_run")
    config = write_config(folder)
    proc = cli("run", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return config, folder / "runs" / "fr"


@pytest.fixture
def run_copy(finished_run, tmp_path: Path) -> tuple[Path, Path]:
    """(config path, run folder) of a private copy of the finished run."""
    _, run_dir = finished_run
    config = write_config(tmp_path)
    shutil.copytree(run_dir, tmp_path / "runs" / "fr")
    return config, tmp_path / "runs" / "fr"


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (the lock file left out) -> SHA-256 of its bytes; folders too."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(Path(folder, d), root) + "/"] = "dir"
        for f in files:
            if f != ".lock":
                path = Path(folder, f)
                out[os.path.relpath(path, root)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def refused(capsys, argv: list[str], root: Path, status: int = 2) -> str:
    """Run the CLI; assert `status`, one line on stderr and nothing under `root` changed; the line."""
    capsys.readouterr()
    before = snapshot(root)
    got = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert (got, err.count("\n"), err.endswith("\n")) == (status, 1, True), err
    after = snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed
    return err
