"""Factorized embedding tables: a table E (n x d) held as A (n x r) times B (r x d).

`FactorizedEBC` stands where a model's EmbeddingBagCollection stood: it looks the features up in
an EBC (float or quantized) holding A for every factorized table, then multiplies each such
feature's pooled vector by its table's B. Sum and mean pooling commute with the map (the bag of
A's rows times B is the bag of E's rows), so a bag stays one lookup plus one small matmul. Tables
without a map pass through unchanged. Output keys and widths are the original EBC's.
"""
from __future__ import annotations

import torch
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEBC
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor


class FactorizedEBC(nn.Module):
    """`ebc` (its factorized tables of width r) followed by `maps[table]` (r x d) on their features."""

    def __init__(self, ebc: EmbeddingBagCollection | QuantEBC, maps: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.ebc = ebc
        self.maps = nn.ParameterDict({name: nn.Parameter(b.detach().float().clone()) for name, b in maps.items()})
        configs = ebc.embedding_bag_configs()
        unknown = sorted(set(maps) - {c.name for c in configs})
        if unknown:
            raise ValueError(f"factorized table {unknown[0]} is not a table of the EBC")
        for c in configs:
            if c.name in maps and tuple(maps[c.name].shape)[0] != c.embedding_dim:
                raise ValueError(f"table {c.name}: map of {tuple(maps[c.name].shape)} after rows of width "
                                 f"{c.embedding_dim}")
        self.table_of = {f: c.name for c in configs if c.name in maps for f in c.feature_names}

    def feature_maps(self) -> dict[str, torch.Tensor]:
        """The r x d map of every feature of a factorized table."""
        return {f: self.maps[name] for f, name in self.table_of.items()}

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        pooled = self.ebc(features)
        keys = pooled.keys()
        values = [pooled[k] @ self.maps[self.table_of[k]] if k in self.table_of else pooled[k] for k in keys]
        return KeyedTensor.from_tensor_list(keys, values)
