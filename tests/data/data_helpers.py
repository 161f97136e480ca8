"""Helpers shared by the data tests."""
from __future__ import annotations

import numpy as np

from recsys.data.config import DataConfig, SyntheticConfig

SMALL = SyntheticConfig(num_users=300, num_items=200, num_rows=20_000, chunk_rows=3_000)


def small_config(**synthetic) -> DataConfig:
    return DataConfig(source="synthetic", synthetic=SyntheticConfig(**{**SMALL.__dict__, **synthetic}))


def batch_rows(batch) -> list[tuple]:
    """Each row of a Batch as a hashable (label, dense..., ids per key...) tuple."""
    kjt = batch.sparse_features
    per_key = {k: [tuple(x.tolist()) for x in kjt[k].to_dense()] for k in kjt.keys()}
    return [(float(batch.labels[i]), tuple(np.round(batch.dense_features[i].tolist(), 5)),
             *(per_key[k][i] for k in kjt.keys())) for i in range(len(batch.labels))]
