"""What a dataset's rows hold: dense feature names and sparse (id) features with their table sizes.

Sparse features are ordered user side first, then item side, then context; batches carry their
KeyedJaggedTensor keys in exactly this order, so a two-tower model can split a batch's features
by side without permuting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Side = Literal["user", "item", "context"]
_SIDE_ORDER = {"user": 0, "item": 1, "context": 2}


@dataclass(frozen=True)
class SparseFeature:
    """One id feature; it gets its own embedding table of `num_embeddings` rows."""

    name: str
    num_embeddings: int
    side: Side
    max_ids: int = 1  # ids per row at most; 1 is one-hot, more is multi-hot

    def __post_init__(self) -> None:
        if self.num_embeddings < 1:
            raise ValueError(f"sparse feature {self.name}: num_embeddings must be >= 1")
        if self.side not in _SIDE_ORDER:
            raise ValueError(f"sparse feature {self.name}: side must be user, item or context")


@dataclass(frozen=True)
class Schema:
    dense: tuple[str, ...]
    sparse: tuple[SparseFeature, ...]

    def __post_init__(self) -> None:
        sides = [_SIDE_ORDER[f.side] for f in self.sparse]
        if sides != sorted(sides):
            raise ValueError("schema: sparse features must be ordered user, item, context")
        names = [f.name for f in self.sparse]
        if len(set(names)) != len(names):
            raise ValueError("schema: sparse feature names must be unique")

    def keys(self, side: Side | None = None) -> list[str]:
        """Sparse feature names, all or of one side, in batch key order."""
        return [f.name for f in self.sparse if side is None or f.side == side]

    def feature(self, name: str) -> SparseFeature:
        for f in self.sparse:
            if f.name == name:
                return f
        raise KeyError(name)
