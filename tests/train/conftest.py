"""In-process training of a tiny DLRM (one-process gloo group): fast enough to kill and resume
a run many times in one test."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from recsys.data.config import DataConfig, SyntheticConfig
from recsys.data.synthetic import SyntheticDataset, load_synthetic
from recsys.models.dlrm import DLRMConfig, DLRMRanker
from recsys.train.config import OptimConfig, TrainConfig
from recsys.train.distributed import init_distributed
from recsys.train.loop import TrainResult, train
from recsys.train.tasks import ClickTask

DATA = DataConfig(cache_dir="unused", synthetic=SyntheticConfig(num_users=200, num_items=100, num_rows=6000))
MODEL = DLRMConfig(embedding_dim=8, dense_arch=(8,), over_arch=(8, 1))


@dataclass
class Trainer:
    """Trains the tiny DLRM into `out` (checkpoints under out/checkpoints)."""

    dataset: SyntheticDataset
    optim: OptimConfig = OptimConfig(batch_size=256, epochs=3, lr_dense=0.05, lr_sparse=0.5)
    config: TrainConfig = TrainConfig(device="cpu", eval_batch_size=4096)

    def task(self) -> ClickTask:
        return ClickTask("dlrm", self.dataset, lambda d: DLRMRanker(self.dataset.schema, MODEL, d))

    def __call__(self, out: Path, resume: bool = True, data=None, **optim) -> TrainResult:
        options = OptimConfig(**{**self.optim.__dict__, **optim})
        return train(self.task(), data or self.dataset, options, self.config, init_distributed("cpu"), out,
                     "fingerprint", seed=1, resume=resume)


@pytest.fixture(scope="session")
def trainer() -> Trainer:
    """The trainer, its one-process group started; the address that group took is not left in the
    environment, where a test's subprocess (torchrun, the CLI) would find the port taken."""
    torch.set_num_threads(1)
    own = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    init_distributed("cpu")
    for key in own:
        os.environ.pop(key, None)
    return Trainer(load_synthetic(DATA, 1))


def weights(result: TrainResult) -> dict[str, torch.Tensor]:
    """The trained model's parameters as plain tensors (sharded tables included)."""
    return {k: (v.local_shards()[0].tensor if hasattr(v, "local_shards") else v).detach().clone()
            for k, v in result.model.state_dict().items()}
