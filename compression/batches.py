"""Your own batches as the train / val / test splits compression reads (`BatchSplits`).

The rows of each split's TorchRec Batches are joined once and handed out again in batches of
whatever size a step asks for (training steps, sensitivity probes, evaluation, the latency
batches), in their given order or shuffled per epoch. Single process only.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torchrec.datasets.utils import Batch

from recsys.data.dataset import Split
from recsys.data.jagged import cat_rows, take_rows
from recsys.errors import ConfigError


def as_batches(key: str, batches: Batch | Iterable[Batch]) -> list[Batch]:
    """One Batch or an iterable of them as a list; ConfigError naming `key` if empty or not Batches."""
    out = [batches] if isinstance(batches, Batch) else list(batches)
    if not out:
        raise ConfigError(f"{key}: no batches")
    bad = next((b for b in out if not isinstance(b, Batch)), None)
    if bad is not None:
        raise ConfigError(f"{key}: expected torchrec Batches, got {type(bad).__name__}")
    return out


def join(batches: list[Batch]) -> Batch:
    """One Batch holding the rows of `batches`, in order."""
    return Batch(dense_features=torch.cat([b.dense_features for b in batches]),
                 sparse_features=cat_rows([b.sparse_features for b in batches]),
                 labels=torch.cat([b.labels for b in batches]))


def take(batch: Batch, rows: torch.Tensor) -> Batch:
    """Rows `rows` of `batch` (any order, repeats allowed)."""
    return Batch(dense_features=batch.dense_features[rows], sparse_features=take_rows(batch.sparse_features, rows),
                 labels=batch.labels[rows])


class BatchSplits:
    """A `BatchSource` over given batches: `train`, `val` and `test` rows."""

    def __init__(self, train: list[Batch], val: list[Batch], test: list[Batch]) -> None:
        self.splits: dict[str, Batch] = {"train": join(train), "val": join(val), "test": join(test)}

    def batches(self, split: Split, batch_size: int, *, epoch: int = 0, shuffle: bool = False,
                rank: int = 0, world_size: int = 1, drop_last: bool = False,
                positives_only: bool = False) -> Iterator[Batch]:
        """Batches of `batch_size` rows (the last one shorter unless `drop_last`); shuffled by a
        permutation seeded with `epoch`; clicked rows only if `positives_only`."""
        if world_size != 1:
            raise ValueError("your own batches are read by a single process (world_size 1)")
        rows = self.splits[split]
        n = rows.labels.shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)) if shuffle else torch.arange(n)
        if positives_only:
            order = order[rows.labels[order] > 0]
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield take(rows, order[start:start + batch_size])
