"""Embedding tables for a schema: one EmbeddingBagConfig per sparse feature."""
from __future__ import annotations

import torch
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

from recsys.data.schema import Schema, Side


def table_name(feature: str) -> str:
    return f"t_{feature}"


def embedding_bag_collection(schema: Schema, dim: int, device: torch.device,
                             side: Side | None = None) -> EmbeddingBagCollection:
    """An EBC with one table per sparse feature (optionally of one side); multi-hot features mean-pool."""
    tables = [
        EmbeddingBagConfig(
            name=table_name(f.name), embedding_dim=dim, num_embeddings=f.num_embeddings,
            feature_names=[f.name], pooling=PoolingType.SUM if f.max_ids == 1 else PoolingType.MEAN)
        for f in schema.sparse if side is None or f.side == side
    ]
    return EmbeddingBagCollection(tables=tables, device=device)
