"""Jagged id columns (a list of id lists per row), gathered and joined without Python loops.

`ragged_take` is the one ragged-row gather: numpy `Jagged` columns (the data sources) and TorchRec
KeyedJaggedTensors (`take_rows`) both use it. A column with exactly one id per row keeps no
offsets, so taking rows is a single gather; this is the common case (user id, item id,
categories) and the one that bounds throughput.
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
        lengths, positions = ragged_take(torch.from_numpy(self.offsets), torch.as_tensor(rows, dtype=torch.int64))
        return Jagged.from_lengths(lengths.numpy(), self.values[positions.numpy()])

    @staticmethod
    def concat(parts: Sequence[Jagged]) -> Jagged:
        """Rows of `parts`, one after another."""
        values = np.concatenate([p.values for p in parts])
        if all(p.offsets is None for p in parts):
            return Jagged(values)
        return Jagged.from_lengths(np.concatenate([p.lengths() for p in parts]), values)


def ragged_take(offsets: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `rows` (any order, repeats allowed) of a ragged array with `offsets` [n + 1]: their
    lengths, and the positions in the values array of their elements, row after row."""
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    ends = torch.cumsum(lengths, 0)
    within = torch.arange(int(ends[-1]) if len(ends) else 0, device=offsets.device)
    return lengths, torch.repeat_interleave(starts - (ends - lengths), lengths) + within


def take_rows(kjt: KeyedJaggedTensor, rows: torch.Tensor) -> KeyedJaggedTensor:
    """The KJT made of rows `rows` (any order, repeats allowed) of every key."""
    lengths, values = [], []
    for key in kjt.keys():
        jt = kjt[key]
        key_lengths, positions = ragged_take(jt.offsets().long(), rows)
        lengths.append(key_lengths)
        values.append(jt.values()[positions])
    return KeyedJaggedTensor.from_lengths_sync(
        keys=kjt.keys(), values=torch.cat(values), lengths=torch.cat(lengths).int())


def cat_rows(kjts: Sequence[KeyedJaggedTensor]) -> KeyedJaggedTensor:
    """The rows of `kjts` (same keys, in the same order), one KJT after another."""
    keys = kjts[0].keys()
    if any(k.keys() != keys for k in kjts):
        raise ValueError(f"KeyedJaggedTensors with different keys cannot be joined by rows ({keys} first)")
    parts = [k[key] for key in keys for k in kjts]
    return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.cat([p.values() for p in parts]),
                                               lengths=torch.cat([p.lengths() for p in parts]).int())


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
