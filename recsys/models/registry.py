"""Build any model of the project from (kind, schema, config dict): what an exported model needs."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.config_loading import from_dict
from recsys.data.schema import Schema, SparseFeature
from recsys.models.dlrm import DLRMConfig, DLRMRanker
from recsys.models.logistic import LogisticRegression
from recsys.models.two_tower import TwoTower, TwoTowerConfig

KINDS = ("dlrm", "two_tower", "logistic")


def build_model(kind: str, schema: Schema, config: dict[str, Any], device: torch.device) -> nn.Module:
    """A freshly initialised model of `kind`; two-tower's popularity prior is uniform (serving needs none)."""
    if kind == "dlrm":
        return DLRMRanker(schema, from_dict(DLRMConfig, config), device)
    if kind == "two_tower":
        items = schema.feature(schema.keys("item")[0]).num_embeddings
        return TwoTower(schema, from_dict(TwoTowerConfig, config), np.zeros(items), device)
    if kind == "logistic":
        return LogisticRegression(schema, device)
    raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")


def schema_to_dict(schema: Schema) -> dict[str, Any]:
    return {"dense": list(schema.dense), "sparse": [asdict(f) for f in schema.sparse]}


def schema_from_dict(raw: dict[str, Any]) -> Schema:
    return Schema(dense=tuple(raw["dense"]), sparse=tuple(SparseFeature(**f) for f in raw["sparse"]))
