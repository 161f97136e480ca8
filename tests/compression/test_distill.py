"""Two-tower distillation: the soft loss is T^2 times the KL divergence of the teacher's in-batch
softmax from the student's (recomputed here from every (user, item) pair of the batch, scored one
pair per row); it and its gradient vanish when the student is the teacher; alpha < 1 trains a
different student, nearer the teacher's in-batch distribution than the one trained on labels alone."""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from torchrec import KeyedJaggedTensor
from torchrec.datasets.utils import Batch

from compression.build import teacher_of, teacher_task
from compression.config import DistillConfig
from compression.distill import student_alone, train_student
from recsys.data.jagged import take_rows

STUDENT = {"embedding_dim": 4, "tower": [8, 4]}


def _click_batches(dataset, split: str, rows: int, count: int) -> list[Batch]:
    return list(itertools.islice(dataset.batches(split, rows, drop_last=True, positives_only=True), count))


def _all_pairs(model, batch: Batch, item_keys: tuple[str, ...]) -> np.ndarray:
    """[n, n]: row i's user features with row j's item features, scored as one row each."""
    n = len(batch.labels)
    users = take_rows(batch.sparse_features, torch.arange(n).repeat_interleave(n)).to_dict()
    items = take_rows(batch.sparse_features, torch.arange(n).repeat(n)).to_dict()
    kjt = KeyedJaggedTensor.from_jt_dict({k: (items if k in item_keys else users)[k]
                                          for k in batch.sparse_features.keys()})
    pairs = Batch(dense_features=batch.dense_features.repeat_interleave(n, 0), sparse_features=kjt,
                  labels=torch.ones(n * n))
    with torch.no_grad():
        return model.score(pairs).double().reshape(n, n).numpy()


def _soft_loss_by_hand(student, teacher, batch: Batch, item_keys: tuple[str, ...], temperature: float) -> float:
    """T^2 * mean over users of sum over the batch's items of p log(p / q), p the teacher's softmax
    at temperature T, q the student's."""
    log_p = log_softmax(_all_pairs(teacher, batch, item_keys) / temperature, axis=1)
    log_q = log_softmax(_all_pairs(student, batch, item_keys) / temperature, axis=1)
    return temperature ** 2 * float((np.exp(log_p) * (log_p - log_q)).sum(1).mean())


@pytest.fixture
def two_tower(tiny_exported, tiny_dataset):
    """(teacher model, its retrieval task, a builder of a smaller student, the item-side keys)."""
    exported = tiny_exported("two_tower")
    build, _ = teacher_of(exported).student_builder(STUDENT)
    return exported.model, teacher_task(exported, tiny_dataset), build, tuple(tiny_dataset.schema.keys("item"))


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_soft_loss_is_t_squared_kl_of_the_in_batch_softmaxes(two_tower, tiny_dataset, temperature):
    teacher, task, build, item_keys = two_tower
    torch.manual_seed(0)
    student = build()
    for batch in _click_batches(tiny_dataset, "train", 16, 2):
        expected = _soft_loss_by_hand(student, teacher, batch, item_keys, temperature)
        assert float(task.soft_loss(student, teacher, batch, temperature).detach()) == pytest.approx(expected, rel=1e-4)
        assert expected > 0.01


def test_soft_loss_and_its_gradient_vanish_when_the_student_is_the_teacher(two_tower, tiny_dataset):
    teacher, task, _, _ = two_tower
    batch = _click_batches(tiny_dataset, "train", 32, 1)[0]
    student = copy.deepcopy(teacher)
    same_loss, same_grad = _loss_and_largest_gradient(task, student, teacher, batch)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other_loss, other_grad = _loss_and_largest_gradient(task, student, teacher, batch)
    assert abs(same_loss) < 1e-6 and other_loss > 0.01
    assert same_grad < 1e-4 * other_grad  # zero up to float32 rounding of logits / 0.1


def _loss_and_largest_gradient(task, student, teacher, batch: Batch) -> tuple[float, float]:
    student.zero_grad()
    loss = task.soft_loss(student, teacher, batch, 2.0)
    loss.backward()
    grads = [float(p.grad.abs().max()) for p in student.parameters() if p.grad is not None]
    assert len(grads) == len(list(student.parameters()))
    return float(loss.detach()), max(grads)


def test_alpha_below_one_trains_a_student_nearer_the_teacher(two_tower, tiny_dataset):
    teacher, task, build, item_keys = two_tower
    config = DistillConfig(student=STUDENT, alpha=0.3, temperature=2.0, epochs=1, batch_size=64)
    distilled = train_student(build, teacher, task, config)
    alone = student_alone(build, task, config)
    assert any(not torch.equal(a, b) for a, b in zip(distilled.state_dict().values(), alone.state_dict().values()))
    test = _click_batches(tiny_dataset, "test", 64, 4)
    gap = {name: np.mean([_soft_loss_by_hand(model, teacher, b, item_keys, 2.0) for b in test])
           for name, model in (("distilled", distilled), ("alone", alone))}
    assert gap["distilled"] < 0.5 * gap["alone"], gap  # measured: 0.064 against 0.25
