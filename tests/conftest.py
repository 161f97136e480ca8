"""Shared fixtures: a tiny synthetic experiment config that trains in seconds."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

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


@pytest.fixture(autouse=True, scope="session")
def _quiet_libraries():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torchrec.*")
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    logging.disable(logging.WARNING)
    os.environ.setdefault("CI", "true")
