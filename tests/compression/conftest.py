"""Compression fixtures: random-weight models over a small schema, random batches, a tiny dataset."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchrec import KeyedJaggedTensor
from torchrec.datasets.utils import Batch

from recsys.data.schema import Schema, SparseFeature

# A multi-hot (MEAN-pooled) table comes first on the user side, so the quantized EBC (which
# groups tables by pooling) returns keys in another order than the float one.
SCHEMA = Schema(dense=("a", "b"), sparse=(
    SparseFeature("user_tags", 24, "user", max_ids=3),
    SparseFeature("user_id", 300, "user"),
    SparseFeature("item_id", 200, "item"),
    SparseFeature("item_tags", 40, "item", max_ids=2),
    SparseFeature("device", 4, "context"),
))
MODEL_CONFIGS = {
    "dlrm": {"embedding_dim": 16, "dense_arch": [16, 16], "over_arch": [16, 1]},
    "two_tower": {"embedding_dim": 16, "tower": [16, 8]},
}


def random_batch(schema: Schema, rows: int, seed: int = 0) -> Batch:
    """A batch with every id of every feature drawn uniformly (multi-hot lengths 0..max_ids)."""
    g = torch.Generator().manual_seed(seed)
    lengths, values = [], []
    for f in schema.sparse:
        n = (torch.randint(0, f.max_ids + 1, (rows,), generator=g) if f.max_ids > 1
             else torch.ones(rows, dtype=torch.long))
        lengths.append(n)
        values.append(torch.randint(0, f.num_embeddings, (int(n.sum()),), generator=g))
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=schema.keys(), values=torch.cat(values),
                                              lengths=torch.cat(lengths).int())
    return Batch(dense_features=torch.randn(rows, len(schema.dense), generator=g), sparse_features=kjt,
                 labels=torch.randint(0, 2, (rows,), generator=g).float())


@pytest.fixture
def random_model():
    """kind -> a random-weight model of that kind over SCHEMA (embedding rows ~ N(0, 0.1))."""
    from recsys.models.registry import build_model

    def make(kind: str):
        torch.manual_seed(0)
        model = build_model(kind, SCHEMA, MODEL_CONFIGS[kind], torch.device("cpu")).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".embedding_bags." in name:
                    p.normal_(0.0, 0.1)
        return model

    return make


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> object:
    """A small synthetic click log (300 users, 200 items, 6000 rows), generated once."""
    from recsys.data.config import DataConfig, SyntheticConfig
    from recsys.data.sources import load_dataset

    cache = Path(tmp_path_factory.mktemp("cache"))
    config = DataConfig(cache_dir=str(cache), synthetic=SyntheticConfig(num_users=300, num_items=200, num_rows=6000))
    return load_dataset(config, 3)


TINY_CONFIGS = {
    "dlrm": {"embedding_dim": 8, "dense_arch": [16, 8], "over_arch": [16, 1]},
    "two_tower": {"embedding_dim": 8, "tower": [16, 8]},
}


@pytest.fixture(scope="session")
def tiny_exported(tiny_dataset):
    """kind -> an ExportedModel over the tiny dataset's schema, briefly trained so scores mean something
    (trained once per session; tests must not modify it)."""
    from compression.build import teacher_task
    from compression.config import DistillConfig
    from compression.distill import train_student
    from recsys.models.registry import build_model
    from recsys.serving.export import ExportedModel

    trained: dict[str, ExportedModel] = {}

    def make(kind: str) -> ExportedModel:
        if kind not in trained:
            config, schema = TINY_CONFIGS[kind], tiny_dataset.schema
            task = teacher_task(ExportedModel(kind, schema, config, None, {}), tiny_dataset)
            model = train_student(lambda: build_model(kind, schema, config, torch.device("cpu")), None, task,
                                  DistillConfig(alpha=1.0, epochs=1, batch_size=256))
            trained[kind] = ExportedModel(kind, schema, config, model, {})
        return trained[kind]

    return make
