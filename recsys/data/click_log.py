"""An in-memory columnar click log joined at batch time with user and item feature tables.

Events hold only (user index, item index, label, dense context, context ids); the user's and
item's sparse features live once per entity in a `FeatureTable` and are gathered per batch.
That keeps a log of millions of events small and makes the retrieval view (all items, all users)
come from the same tables the ranking batches use.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchrec.datasets.utils import Batch

from recsys.data.jagged import Jagged, to_kjt
from recsys.data.schema import SparseFeature
from recsys.errors import DataError


def check_ids(features: Sequence[SparseFeature], columns: Sequence[Jagged], where: str) -> None:
    """DataError naming the feature and the id if any id lies outside its table."""
    for feature, column in zip(features, columns, strict=True):
        bad = (column.values < 0) | (column.values >= feature.num_embeddings)
        if bad.any():
            value = int(column.values[np.argmax(bad)])
            raise DataError(f"{where}: feature {feature.name}: id {value} is outside its table "
                            f"[0, {feature.num_embeddings})")
        if column.offsets is not None and len(column) and column.lengths().max() > feature.max_ids:
            raise DataError(f"{where}: feature {feature.name}: more than max_ids="
                            f"{feature.max_ids} ids in a row")


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Sparse features of one side; row i belongs to entity i (user i or item i)."""

    features: tuple[SparseFeature, ...]
    columns: tuple[Jagged, ...]
    size: int

    def __post_init__(self) -> None:
        if any(len(c) != self.size for c in self.columns):
            raise ValueError("feature table: every column needs one row per entity")
        check_ids(self.features, self.columns, "feature table")

    def take(self, rows: np.ndarray) -> list[Jagged]:
        return [c.take(rows) for c in self.columns]

    def kjt(self, rows: np.ndarray | None = None):
        """The features of `rows` (all entities by default) as a KeyedJaggedTensor."""
        rows = np.arange(self.size) if rows is None else rows
        return to_kjt([f.name for f in self.features], self.take(rows), len(rows))


@dataclass(frozen=True, eq=False)
class Rows:
    """Fully joined rows in numpy: what one Batch holds before it becomes torch tensors. `labels`:
    float32 [n] clicks, or [n, 2] clicks and conversions (ClickLog.conversions)."""

    dense: np.ndarray
    sparse: tuple[Jagged, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: Sequence[Rows]) -> Rows:
        if len(parts) == 1:
            return parts[0]
        return Rows(np.concatenate([p.dense for p in parts]),
                    tuple(Jagged.concat(cols) for cols in zip(*(p.sparse for p in parts))),
                    np.concatenate([p.labels for p in parts]))

    def to_batch(self, keys: Sequence[str]) -> Batch:
        return Batch(dense_features=torch.from_numpy(np.ascontiguousarray(self.dense)),
                     sparse_features=to_kjt(keys, self.sparse, len(self)),
                     labels=torch.from_numpy(self.labels))


@dataclass(frozen=True, eq=False)
class ClickLog:
    """Events: label float32 [n] in {0, 1}, dense float32 [n, D], context id columns, and
    optionally the user and item of each event with the tables they index, and a second label,
    `conversions` float32 [n] in {0, 1} (1: clicked and converted; only clicks convert): then its
    rows' labels are [n, 2], clicks and conversions."""

    labels: np.ndarray
    dense: np.ndarray
    context: tuple[Jagged, ...] = ()
    user: np.ndarray | None = None
    item: np.ndarray | None = None
    users: FeatureTable | None = None
    items: FeatureTable | None = None
    conversions: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, index, table in (("user", self.user, self.users), ("item", self.item, self.items)):
            if (index is None) != (table is None):
                raise ValueError(f"click log: `{name}` and `{name}s` must be given together")

    def __len__(self) -> int:
        return len(self.labels)

    def _sides(self) -> list[tuple[str, np.ndarray, FeatureTable]]:
        """(name, index of each event, table) for the user and the item side, where the log has them."""
        return [(name, index, table) for name, index, table in
                (("user", self.user, self.users), ("item", self.item, self.items))
                if index is not None and table is not None]

    def user_item(self) -> tuple[np.ndarray, np.ndarray]:
        """The user and the item index of each event; DataError if the log has none."""
        if self.user is None or self.item is None:
            raise DataError("click log: the events have no user and item indices")
        return self.user, self.item

    def rows(self, idx: np.ndarray) -> Rows:
        """Events `idx` joined with their user's and item's features (schema key order)."""
        sparse: list[Jagged] = []
        for _, index, table in self._sides():
            sparse += table.take(index[idx])
        sparse += [c.take(idx) for c in self.context]
        labels = self.labels[idx] if self.conversions is None else \
            np.stack([self.labels[idx], self.conversions[idx]], axis=1)
        return Rows(self.dense[idx], tuple(sparse), labels)

    def subset(self, idx: np.ndarray) -> ClickLog:
        """The events `idx` (the same tables)."""
        return ClickLog(self.labels[idx], self.dense[idx], tuple(c.take(idx) for c in self.context),
                        None if self.user is None else self.user[idx],
                        None if self.item is None else self.item[idx], self.users, self.items,
                        None if self.conversions is None else self.conversions[idx])

    def validate(self, context_features: Sequence[SparseFeature], where: str) -> None:
        """DataError naming `where` and the first bad row: labels not 0/1, a conversion without
        a click, non-finite dense values, or ids outside their tables."""
        bad = (self.labels != 0) & (self.labels != 1)
        if bad.any():
            raise DataError(f"{where}: row {int(np.argmax(bad))}: label "
                            f"{self.labels[np.argmax(bad)]} is not 0 or 1")
        if self.conversions is not None:
            bad = (self.conversions != 0) & ((self.conversions != 1) | (self.labels != 1))
            if bad.any():
                raise DataError(f"{where}: row {int(np.argmax(bad))}: conversion "
                                f"{self.conversions[np.argmax(bad)]} is not 0, or 1 on a click")
        finite = np.isfinite(self.dense).all(axis=1)
        if not finite.all():
            raise DataError(f"{where}: row {int(np.argmin(finite))}: dense feature is NaN or inf")
        check_ids(context_features, self.context, where)
        for name, index, table in self._sides():
            if len(index) and (index.min() < 0 or index.max() >= table.size):
                raise DataError(f"{where}: {name} index outside [0, {table.size})")
