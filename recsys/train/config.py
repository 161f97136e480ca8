"""Training settings: shared ones ([train]) and each model's optimisation ([<model>.optim])."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from recsys.errors import require
from recsys.train.schedule import LRSchedule
from recsys.train.sharding import ShardingConfig

MAX_LR = 1e30  # optimisers take float32 learning rates: 3e38 overflowed (a traceback); divergence is caught later


@dataclass(frozen=True)
class OptimConfig:
    batch_size: int = 512  # per process; the global batch is batch_size x processes
    epochs: int = 3
    lr_dense: float = 1e-3  # Adam, data-parallel MLPs
    lr_sparse: float = 0.05  # fused row-wise Adagrad, sharded embedding tables
    schedule: LRSchedule | None = None  # lr_dense's warm-up and decay; None: constant (None keeps old fingerprints)
    clip_grad_norm: float | None = None  # the dense gradients' largest total L2 norm; None: no clipping

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.epochs >= 1, "epochs", "must be >= 1")
        for key, lr in (("lr_dense", self.lr_dense), ("lr_sparse", self.lr_sparse)):  # 3e38 overflowed Adam
            require(math.isfinite(lr) and 0 < lr <= MAX_LR, key, f"must be a finite number in (0, {MAX_LR:g}]")
        require(self.clip_grad_norm is None or (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0),
                "clip_grad_norm", "must be a finite number > 0 (leave it out for no clipping)")

    def dense_lr(self, step: int) -> float:
        """The dense learning rate of optimizer step `step` (0 = the first)."""
        return self.schedule.lr(step, self.lr_dense) if self.schedule is not None else self.lr_dense


@dataclass(frozen=True)
class TrainConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0 = only at epoch ends
    eval_batch_size: int = 4096
    threads: int = 0  # torch threads per process; 0 = cores / local processes
    select_best: bool = True  # test the epoch with the best validation metric, not the last
    patience: int = 0  # stop after this many epochs without a better validation metric; 0 = never

    def __post_init__(self) -> None:
        require(self.patience >= 0, "patience", "must be >= 0")
        require(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0")
        require(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        require(self.threads >= 0, "threads", "must be >= 0")
