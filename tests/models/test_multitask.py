"""The multi-task DLRM: the ESMM loss against a hand computation; the click head is the model's
score, unchanged by the second head; a tiny model learns the conversion head (better than a
constant); compression (int8 tables) and distillation keep both heads; with the keys off, the
DLRM is one-headed and trained by plain binary cross-entropy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrec.datasets.utils import Batch

from compression.config import DistillConfig, VariantConfig
from compression.distill import student_alone, train_student
from compression.recipe import Teacher, build_variant
from compression.variant import ModelSpec
from recsys.data.config import DataConfig, SyntheticConfig
from recsys.data.synthetic import load_synthetic
from recsys.metrics.ctr import auc
from recsys.models.dlrm import DLRMConfig, DLRMRanker, esmm_loss
from recsys.models.registry import build_model
from recsys.train.tasks import ClickTask

CPU = torch.device("cpu")
TEACHER = {"embedding_dim": 8, "dense_arch": [16, 8], "over_arch": [16, 1], "conversion_arch": [16, 1]}
STUDENT = {"embedding_dim": 4, "dense_arch": [8, 4], "over_arch": [8, 1], "conversion_arch": [8, 1]}
TRAIN = DistillConfig(epochs=2, batch_size=256, lr_dense=0.01, lr_sparse=0.1, alpha=0.3)


def _data(conversion_rate: float | None):
    synthetic = SyntheticConfig(num_users=300, num_items=200, num_rows=20_000, conversion_rate=conversion_rate)
    return load_synthetic(DataConfig(cache_dir="unused", synthetic=synthetic), 3)


@pytest.fixture(scope="module")
def trained():
    """(dataset, task, spec, teacher trained on labels, student distilled from it), trained once."""
    torch.set_num_threads(1)
    dataset = _data(0.3)
    spec = ModelSpec("dlrm", dataset.schema, TEACHER)
    task = ClickTask("dlrm", dataset, lambda d: build_model("dlrm", dataset.schema, TEACHER, d))
    teacher = student_alone(spec.build, task, TRAIN)
    student = train_student(spec.with_overrides(STUDENT).build, teacher, task, TRAIN)
    return dataset, task, spec, teacher, student


def test_esmm_loss_is_click_bce_plus_bce_of_the_product():
    g = torch.Generator().manual_seed(0)
    click, conversion = 3 * torch.randn(50, generator=g), 3 * torch.randn(50, generator=g)
    clicks = torch.randint(0, 2, (50,), generator=g).float()
    labels = torch.stack([clicks, clicks * torch.randint(0, 2, (50,), generator=g)], 1)
    p_click = 1 / (1 + np.exp(-click.double().numpy()))
    p = p_click * 1 / (1 + np.exp(-conversion.double().numpy()))
    y, c = labels[:, 1].double().numpy(), labels[:, 0].double().numpy()
    by_hand = -np.mean(c * np.log(p_click) + (1 - c) * np.log(1 - p_click)) \
        - np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert float(esmm_loss(click, conversion, labels)) == pytest.approx(by_hand, rel=1e-5)


def test_the_click_head_is_the_score_and_forward_trains_both(trained):
    dataset, task, spec, teacher, _ = trained
    batch = next(dataset.batches("test", 512))
    click, conversion = teacher.forward_tasks(batch)
    torch.testing.assert_close(click, teacher.score(batch), rtol=0, atol=0)
    loss, (_, logits, labels) = teacher(batch)
    torch.testing.assert_close(loss, esmm_loss(click, conversion, batch.labels))
    torch.testing.assert_close(logits, click.detach())
    assert labels.shape == (512, 2)


def test_a_tiny_model_learns_the_conversion_head(trained):
    dataset, task, _, teacher, _ = trained
    metrics = task.evaluate(teacher, "test", 4096)
    assert metrics["auc"] > 0.65 and metrics["ne"] < 0.97
    assert metrics["conversion_auc"] > 0.6 and metrics["conversion_ne"] < 0.98  # a constant: 0.5 and >= 1
    batches = list(dataset.batches("test", 4096))
    labels = torch.cat([b.labels for b in batches]).numpy()
    with torch.no_grad():
        conversion = torch.cat([teacher.forward_tasks(b)[1] for b in batches]).numpy()
    clicked = labels[:, 0] == 1
    assert metrics["conversion_auc"] == pytest.approx(auc(labels[clicked, 1], conversion[clicked]), abs=1e-12)
    assert metrics["conversion_n"] == clicked.sum()


def test_int8_tables_keep_both_heads(trained):
    dataset, task, spec, teacher, _ = trained
    variant = build_variant(Teacher(teacher, spec), task, VariantConfig(name="int8"))
    scorer = variant.scorer()
    full, int8 = task.evaluate(teacher, "test", 4096), task.evaluate(scorer.model, "test", 4096)
    for key in ("auc", "conversion_auc", "ctcvr_auc"):
        assert int8[key] == pytest.approx(full[key], abs=0.003), key
    batch = next(dataset.batches("test", 100))
    with torch.no_grad():  # the scorer (what serving and the simulator call) scores the click head
        torch.testing.assert_close(scorer.score(batch), scorer.model.forward_tasks(batch)[0])


def test_distillation_keeps_both_heads(trained):
    _, task, _, teacher, student = trained
    assert student.conversion is not None
    first = [next(m.conversion.parameters()).shape for m in (student, teacher)]
    assert first == [(8, 4 + 28), (16, 8 + 28)]  # its own head on its own interaction: dim + 8 choose 2 dots
    full, small = task.evaluate(teacher, "test", 4096), task.evaluate(student, "test", 4096)
    assert small["conversion_auc"] > 0.6
    assert small["conversion_auc"] == pytest.approx(full["conversion_auc"], abs=0.03)
    assert small["auc"] == pytest.approx(full["auc"], abs=0.03)


def test_the_soft_loss_distils_each_head(trained):
    dataset, task, _, teacher, student = trained
    batch = next(dataset.batches("train", 256))
    t = torch.stack(teacher.forward_tasks(batch), 1).detach() / 2.0
    s = torch.stack(student.forward_tasks(batch), 1).detach() / 2.0
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    by_head = sum(bce(s[:, k], torch.sigmoid(t[:, k])) for k in range(2)) * 4.0
    torch.testing.assert_close(task.soft_loss(student, teacher, batch, 2.0).detach(), by_head)


def test_a_head_without_labels_or_labels_without_a_head_are_refused(trained):
    dataset = trained[0]
    batch = next(dataset.batches("train", 8))
    plain = DLRMRanker(dataset.schema, DLRMConfig(embedding_dim=8, dense_arch=(8,), over_arch=(8, 1)), CPU)
    with pytest.raises(Exception, match=r"labels of shape \(8, 2\): a DLRM without a conversion head needs \[B\]"):
        plain(batch)
    with pytest.raises(ValueError, match="no conversion head"):
        plain.forward_tasks(batch)
    one = Batch(batch.dense_features, batch.sparse_features, batch.labels[:, 0])
    with pytest.raises(Exception, match=r"labels of shape \(8,\): a DLRM with a conversion head needs \[B, 2\]"):
        trained[3](one)


def test_with_the_keys_off_a_dlrm_is_one_headed_and_trained_by_plain_bce():
    """Keys off: labels [B], no conversion head, the task's loss is binary cross-entropy on the
    click logits (by hand, padding rows dropped) and the metrics are the click metrics alone."""
    dataset = _data(None)
    batch = next(iter(dataset.batches("train", 512)))
    assert batch.labels.dim() == 1
    torch.manual_seed(0)
    config = DLRMConfig(embedding_dim=8, dense_arch=(16, 8), over_arch=(16, 1))
    model = DLRMRanker(dataset.schema, config, CPU)
    assert not any("conversion" in name for name, _ in model.named_parameters())
    task = ClickTask("dlrm", dataset, lambda d: model)
    with torch.no_grad():
        p = torch.sigmoid(task.score(model, batch)).double().numpy()
        y = batch.labels.double().numpy()
        keep = y >= 0
        by_hand = -np.mean(y[keep] * np.log(p[keep]) + (1 - y[keep]) * np.log(1 - p[keep]))
        assert float(task.loss(model, [batch])) == pytest.approx(by_hand, rel=1e-5)
    assert set(task.evaluate(model, "test", 4096)) == {"auc", "log_loss", "ne", "calibration", "ctr", "n"}
