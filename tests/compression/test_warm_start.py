"""Progressive learning: a student warm-started from the teacher holds the teacher's tables cut to
its dim (first columns, or the rank-k SVD coordinates, whose reconstruction error is the one
Eckart-Young gives) and every MLP weight of the teacher's shape; a student of the teacher's own
shape scores exactly as the teacher; trained one epoch, it ends nearer the teacher than the same
student from scratch."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchrec.datasets.utils import Batch

from compression.build import teacher_of, teacher_task
from compression.config import DistillConfig
from compression.distill import train_student
from compression.tables import float_tables
from compression.warm_start import project, warm_start
from tests.compression.conftest import TINY_CONFIGS

STUDENT = {"embedding_dim": 4, "dense_arch": [16, 4], "over_arch": [16, 1]}  # the teacher's MLP widths


@pytest.fixture
def dlrm(tiny_exported, tiny_dataset):
    exported = tiny_exported("dlrm")
    return exported.model, teacher_task(exported, tiny_dataset), teacher_of(exported)


def test_svd_projection_keeps_the_top_singular_directions() -> None:
    torch.manual_seed(0)
    weight = torch.randn(50, 8) @ torch.diag(torch.tensor([5.0, 4, 3, 2, 1, 0.5, 0.2, 0.1]))
    projected = project(weight, 3, "svd").double().numpy()
    u, s, vt = np.linalg.svd(weight.double().numpy(), full_matrices=False)
    top = u[:, :3] * s[:3]  # U_k S_k, up to each column's sign
    assert np.allclose(projected @ projected.T, top @ top.T, atol=1e-4)
    residual = weight.double().numpy() - projected @ vt[:3]  # Eckart-Young: the rank-3 error is the rest of s
    assert np.linalg.norm(residual) == pytest.approx(np.sqrt((s[3:] ** 2).sum()), rel=1e-4)
    assert torch.equal(project(weight, 3, "truncate"), weight[:, :3])
    few = project(weight[:2], 3, "svd")  # 2 rows: rank 2, kept whole (dot products), the third column 0
    assert torch.allclose(few @ few.T, weight[:2] @ weight[:2].T, atol=1e-4) and not few[:, 2].any()
    assert torch.equal(project(weight, 10, "svd")[:, :8], weight) and not project(weight, 10, "svd")[:, 8:].any()


@pytest.mark.parametrize("how", ["truncate", "svd"])
def test_a_warm_student_holds_the_teachers_tables_cut_to_its_dim_and_its_mlps(dlrm, how) -> None:
    teacher, _, spec = dlrm
    build, _ = spec.student_builder(STUDENT)
    torch.manual_seed(0)
    fresh = build()
    torch.manual_seed(0)
    student = build()
    copied = warm_start(student, teacher, how)
    ours, theirs = float_tables(student), float_tables(teacher)
    for name, table in ours.items():
        expected = theirs[name].weight[:, :4] if how == "truncate" else project(theirs[name].weight, 4, "svd")
        assert torch.equal(table.weight, expected), name
    params, teacher_params, fresh_params = (dict(m.named_parameters()) for m in (student, teacher, fresh))
    for name, param in params.items():
        if name in teacher_params and teacher_params[name].shape == param.shape:
            assert torch.equal(param, teacher_params[name]), name
        elif ".embedding_bags." not in name:
            assert name not in copied and torch.equal(param, fresh_params[name]), name  # kept its fresh init
    assert len(copied) > len(ours)  # some MLP weights came across too


def test_a_warm_student_of_the_teachers_shape_scores_as_the_teacher(dlrm, tiny_dataset) -> None:
    teacher, _, spec = dlrm
    build, _ = spec.student_builder({})
    student = build()
    warm_start(student, teacher, "svd")
    batch = next(iter(tiny_dataset.batches("test", 256)))
    with torch.no_grad():
        assert torch.equal(student.eval().score(batch), teacher.eval().score(batch))


def _gap(student, teacher, batches: list[Batch]) -> float:
    """Mean squared difference of the logits."""
    with torch.no_grad():
        return float(np.mean([((student.score(b) - teacher.score(b)) ** 2).mean().item() for b in batches]))


@pytest.mark.parametrize("how", ["truncate", "svd"])
def test_after_one_epoch_a_warm_student_is_nearer_the_teacher_than_one_from_scratch(dlrm, tiny_dataset, how):
    teacher, task, spec = dlrm
    build, _ = spec.student_builder({"embedding_dim": 4, "dense_arch": [16, 4]})
    config = DistillConfig(alpha=0.5, epochs=1, batch_size=256, lr_dense=1e-3, lr_sparse=0.01)
    scratch = train_student(build, teacher, task, config)
    warm = train_student(build, teacher, task, config, start=how)
    test = list(itertools.islice(tiny_dataset.batches("test", 512), 4))
    gaps = {"scratch": _gap(scratch, teacher.eval(), test), "warm": _gap(warm, teacher, test)}
    assert gaps["warm"] < 0.75 * gaps["scratch"], gaps  # measured: truncate 0.055, svd 0.026, against 0.098


def test_a_warm_start_without_a_teacher_is_refused(dlrm) -> None:
    _, task, spec = dlrm
    build, _ = spec.student_builder(TINY_CONFIGS["dlrm"])
    with pytest.raises(ValueError, match="warm start needs a teacher"):
        train_student(build, None, task, DistillConfig(alpha=1.0, epochs=1), start="svd")
