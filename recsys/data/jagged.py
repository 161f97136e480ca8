"""Jagged id columns in numpy (a list of id lists per row), gathered and joined without Python loops.

A column with exactly one id per row keeps no offsets, so taking rows is a single gather;
this is the common case (user id, item id, categories) and the one that bounds throughput.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor


@dataclass(frozen=True, eq=False)
class Jagged:
    """Ids of n rows: `values` int64 and `offsets` int64 [n + 1], or offsets None for one id per row."""

    values: np.ndarray
    offsets: np.ndarray | None = None

    @staticmethod
    def from_ids(ids: np.ndarray) -> Jagged:
        """One id per row."""
        return Jagged(np.ascontiguousarray(ids, dtype=np.int64))

    @staticmethod
    def from_mask(mask: np.ndarray) -> Jagged:
        """Row i holds the column indices where the boolean matrix `mask` [n, k] is true."""
        rows, cols = np.nonzero(mask)
        offsets = np.zeros(mask.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=mask.shape[0]), out=offsets[1:])
        return Jagged(cols.astype(np.int64), offsets)

    @staticmethod
    def from_lengths(lengths: np.ndarray, values: np.ndarray) -> Jagged:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Jagged(np.asarray(values, dtype=np.int64), offsets)

    def __len__(self) -> int:
        return len(self.values) if self.offsets is None else len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        if self.offsets is None:
            return np.ones(len(self.values), dtype=np.int32)
        return np.diff(self.offsets).astype(np.int32)

    def rows(self) -> list[list[int]]:
        """Plain lists, for tests and debugging."""
        if self.offsets is None:
            return [[int(v)] for v in self.values]
        return [self.values[a:b].tolist() for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def take(self, rows: np.ndarray) -> Jagged:
        """The given rows, in the given order (repeats allowed)."""
        if self.offsets is None:
            return Jagged(self.values[rows])
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Jagged(self.values[gather], offsets)

    @staticmethod
    def concat(parts: Sequence[Jagged]) -> Jagged:
        """Rows of `parts`, one after another."""
        values = np.concatenate([p.values for p in parts])
        if all(p.offsets is None for p in parts):
            return Jagged(values)
        return Jagged.from_lengths(np.concatenate([p.lengths() for p in parts]), values)


def to_kjt(keys: Sequence[str], columns: Sequence[Jagged], num_rows: int) -> KeyedJaggedTensor:
    """One KeyedJaggedTensor (lengths int32, values int64) holding `columns` under `keys`."""
    lengths = [c.lengths() for c in columns]
    return KeyedJaggedTensor(
        keys=list(keys),
        values=torch.from_numpy(np.concatenate([c.values for c in columns])),
        lengths=torch.from_numpy(np.concatenate(lengths)),
        stride=num_rows,
        length_per_key=[len(c.values) for c in columns],
    )
