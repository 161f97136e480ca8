"""Two-tower: its one logit (scores, in-batch loss), the logQ-corrected in-batch loss against a hand
computation, and sampled softmax training that learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data.config import DataConfig, SyntheticConfig
from recsys.data.sources import load_dataset
from recsys.metrics.retrieval import retrieval_metrics
from recsys.models.two_tower import TwoTower, TwoTowerConfig


def _dataset():
    config = DataConfig(synthetic=SyntheticConfig(num_users=300, num_items=200, num_rows=30000))
    return load_dataset(config, seed=1)


def test_in_batch_loss_equals_hand_computation() -> None:
    dataset = _dataset()
    popularity = dataset.item_popularity()
    model = TwoTower(dataset.schema, TwoTowerConfig(temperature=0.2), popularity, torch.device("cpu"))
    batch = next(iter(dataset.batches("train", 64, positives_only=True)))
    loss, _ = model(batch)
    with torch.no_grad():
        u, v = model.towers(batch.sparse_features)
    ids = batch.sparse_features["item_id"].values().tolist()
    q = (popularity + 1.0) / (popularity + 1.0).sum()
    rows = []
    for i in range(len(ids)):
        logits = [float(u[i] @ v[j]) / 0.2 - np.log(q[ids[j]]) for j in range(len(ids))
                  if j == i or ids[j] != ids[i]]
        target = sum(1 for j in range(i) if ids[j] != ids[i])  # position of the diagonal after masking
        rows.append(-logits[target] + np.log(np.sum(np.exp(logits))))
    assert float(loss.detach()) == pytest.approx(np.mean(rows), rel=1e-4)


def test_score_is_the_row_logit_of_the_in_batch_matrix() -> None:
    dataset = _dataset()
    model = TwoTower(dataset.schema, TwoTowerConfig(temperature=0.2), dataset.item_popularity(), torch.device("cpu"))
    batch = next(iter(dataset.batches("test", 50)))
    with torch.no_grad():
        u, v = model.towers(batch.sparse_features)
        scores, matrix = model.score(batch), model.logits(u, v)
    hand = torch.tensor([float(u[i] @ v[i]) / 0.2 for i in range(50)])
    assert scores.shape == (50,) and torch.allclose(scores, hand, atol=1e-5)
    assert torch.allclose(matrix.diagonal(), scores, atol=1e-5) and matrix.shape == (50, 50)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["sampled_softmax", "in_batch"])
def test_training_beats_an_untrained_model(loss: str) -> None:
    torch.manual_seed(0)
    dataset = _dataset()
    model = TwoTower(dataset.schema, TwoTowerConfig(loss=loss, num_negatives=128),
                     dataset.item_popularity(), torch.device("cpu"))
    data = dataset.retrieval("test")
    model.set_catalogue(dataset.retrieval("train").item_features)

    def recall() -> float:
        users, items = model.embed(data.user_features, "user"), model.embed(data.item_features, "item")
        return retrieval_metrics(users, items, data.positives, data.exclude, ks=(10,))[10].recall

    before = recall()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(3):
        for batch in dataset.batches("train", 256, epoch=epoch, shuffle=True, drop_last=True, positives_only=True):
            model(batch)[0].backward()
            opt.step()
            opt.zero_grad()
    assert recall() > before + 0.05
