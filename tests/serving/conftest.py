"""Random-weight models over a small schema, and random requests for them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data.click_log import FeatureTable
from recsys.data.jagged import Jagged
from recsys.data.schema import Schema, SparseFeature
from recsys.serving.requests import RequestBatch

# A multi-hot user feature comes first, so TorchRec groups the tables into a MEAN and a SUM TBE
# whose features interleave request and candidate features.
SCHEMA = Schema(dense=("a", "b", "c"), sparse=(
    SparseFeature("user_tags", 24, "user", max_ids=3),
    SparseFeature("user_id", 300, "user"),
    SparseFeature("item_id", 200, "item"),
    SparseFeature("item_tags", 40, "item", max_ids=2),
    SparseFeature("item_category", 7, "item"),
    SparseFeature("device", 4, "context"),
))
SHARED = ("user_tags", "user_id", "device")
CONFIGS = {
    "dlrm": {"embedding_dim": 8, "dense_arch": [16, 8], "over_arch": [16, 8, 1]},
    "dcn": {"arch": "dcn", "embedding_dim": 8, "dense_arch": [16, 8], "over_arch": [16, 1]},
    "two_tower": {"embedding_dim": 8, "tower": [16, 8]},
    "logistic": {},
}


def column(feature: SparseFeature, rows: int, rng: np.random.Generator) -> Jagged:
    """Random ids of `rows` rows (multi-hot: 0..max_ids ids per row)."""
    if feature.max_ids == 1:
        return Jagged.from_ids(rng.integers(0, feature.num_embeddings, rows))
    lengths = rng.integers(0, feature.max_ids + 1, rows)
    return Jagged.from_lengths(lengths, rng.integers(0, feature.num_embeddings, int(lengths.sum())))


def item_table(seed: int = 0) -> FeatureTable:
    """Every item's features (row i: item i), ids drawn uniformly: the catalogue."""
    rng = np.random.default_rng(seed)
    features = tuple(f for f in SCHEMA.sparse if f.side == "item")
    items = features[0].num_embeddings
    return FeatureTable(features, (Jagged.from_ids(np.arange(items)), *(column(f, items, rng) for f in features[1:])),
                        items)


ITEMS = item_table()


def random_requests(n: int, candidates: int, seed: int = 0) -> RequestBatch:
    """n requests of `candidates` distinct items each (their features: ITEMS'), the request's
    features drawn uniformly."""
    rng = np.random.default_rng(seed)
    items = np.concatenate([rng.choice(ITEMS.size, candidates, replace=False) for _ in range(n)])
    own = {f.name: column(f, n, rng) for f in SCHEMA.sparse if f.name in SHARED}
    theirs = dict(zip((f.name for f in ITEMS.features), ITEMS.take(items)))
    return RequestBatch.from_columns(SCHEMA.keys(), [own[k] if k in own else theirs[k] for k in SCHEMA.keys()], SHARED,
                                     rng.standard_normal((n, 3)), candidates)


@pytest.fixture(scope="module")
def random_model():
    """kind -> a model of that kind over SCHEMA with random weights: embedding rows ~ N(0, 1),
    layers He-initialised, biases ~ N(0, 0.1), so that scores spread."""
    from recsys.models.registry import build_model

    def make(kind: str) -> torch.nn.Module:
        torch.manual_seed(0)
        model = build_model("dlrm" if kind == "dcn" else kind, SCHEMA, CONFIGS[kind], torch.device("cpu")).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".embedding_bags." in name or p.dim() == 1:
                    p.normal_(0.0, 1.0 if p.dim() > 1 else 0.1)
                else:
                    p.normal_(0.0, (2.0 / p.shape[1]) ** 0.5)
        return model

    return make
