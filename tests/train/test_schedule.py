"""The dense learning-rate schedule and gradient clipping: the rate of every step is the closed form
(and what torch's own schedulers give), the fused sparse optimizer keeps its rate, clipping scales
the dense gradients to the bound exactly as clip_grad_norm_ does, and a run killed after a
mid-epoch checkpoint resumes onto the same curve, ending with the uninterrupted run's weights."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle

from recsys.config_loading import from_dict
from recsys.errors import ConfigError
from recsys.train import loop
from recsys.train.config import OptimConfig, TrainConfig
from recsys.train.schedule import LRSchedule
from recsys.train.sharding import ShardingConfig
from tests.train.conftest import weights


def _torch_rates(schedule: LRSchedule, base: float) -> list[float]:
    """The same schedule built from torch.optim.lr_scheduler, one rate per step."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = torch.optim.lr_scheduler
    if schedule.decay == "cosine":
        decay = sched.CosineAnnealingLR(opt, T_max=schedule.decay_steps, eta_min=base * schedule.min_ratio)
    else:
        decay = sched.StepLR(opt, step_size=schedule.decay_steps, gamma=schedule.decay_rate)
    warmup = sched.LinearLR(opt, start_factor=1 / schedule.warmup_steps, end_factor=1.0,
                            total_iters=schedule.warmup_steps - 1)
    both = sched.SequentialLR(opt, [warmup, decay], milestones=[schedule.warmup_steps])
    rates = []
    for _ in range(schedule.warmup_steps + schedule.decay_steps):  # cosine: not past T_max (torch's goes back up)
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        both.step()
    return rates


@pytest.mark.filterwarnings("ignore::UserWarning")  # SequentialLR's "step() called before optimizer.step()"
@pytest.mark.parametrize("schedule", [LRSchedule(warmup_steps=5, decay="cosine", decay_steps=20, min_ratio=0.1),
                                      LRSchedule(warmup_steps=3, decay="step", decay_steps=4, decay_rate=0.5)],
                         ids=["cosine", "step"])
def test_rates_match_torchs_schedulers(schedule: LRSchedule) -> None:
    expected = _torch_rates(schedule, 0.02)
    assert [schedule.lr(s, 0.02) for s in range(len(expected))] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_cosine_stays_at_its_floor_after_decay_steps() -> None:
    schedule = LRSchedule(warmup_steps=2, decay="cosine", decay_steps=10, min_ratio=0.25)
    assert [schedule.lr(s, 4.0) for s in (0, 1, 2, 7, 12, 100)] == pytest.approx(
        [2.0, 4.0, 4.0, 4.0 * (0.25 + 0.75 * 0.5 * (1 + math.cos(math.pi / 2))), 1.0, 1.0])


Step = tuple[float, float, list[torch.Tensor]]


def _record() -> tuple[list[Step], RemovableHandle]:
    """Every dense (Adam) step from now on: its learning rate, its grads' total norm, and the grads."""
    steps: list[Step] = []

    def hook(optimizer, args, kwargs) -> None:
        if not isinstance(optimizer, torch.optim.Adam):
            return
        grads = [p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        steps.append((optimizer.param_groups[0]["lr"], norm, grads))

    return steps, register_optimizer_step_pre_hook(hook)


def test_each_dense_step_runs_at_the_closed_form_rate(trainer, tmp_path: Path, monkeypatch) -> None:
    steps, handle = _record()
    schedule = LRSchedule(warmup_steps=6, decay="cosine", decay_steps=20, min_ratio=0.1)
    try:
        trainer(tmp_path, epochs=2, lr_dense=0.05, schedule=schedule)
    finally:
        handle.remove()
    base, floor = 0.05, 0.005
    by_hand = [base * (s + 1) / 6 if s < 6 else
               floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * min(s - 6, 20) / 20)) for s in range(len(steps))]
    assert len(steps) > 26  # warm-up, the whole cosine and some steps at its floor
    assert [lr for lr, _, _ in steps] == pytest.approx(by_hand, rel=1e-12)


def test_the_fused_sparse_optimizer_keeps_its_own_rate(trainer, tmp_path: Path) -> None:
    """Table-wise tables (fused row-wise Adagrad) stay at lr_sparse; a data-parallel table (the
    planner's choice for tiny tables) is trained by the dense optimizer, so it would follow the schedule."""
    sharded = dataclasses.replace(trainer, config=TrainConfig(device="cpu", sharding=ShardingConfig("table_wise")))
    dense, handle = _record()
    try:
        result = sharded(tmp_path, epochs=1, lr_dense=0.05, lr_sparse=0.5, schedule=LRSchedule(warmup_steps=100))
    finally:
        handle.remove()
    assert [lr for lr, _, _ in dense[:3]] == pytest.approx([0.0005, 0.001, 0.0015])
    fused = result.model.fused_optimizer.param_groups
    assert len(fused) > 0 and {g["lr"] for g in fused} == {0.5}


def test_clipping_scales_the_dense_gradients_as_clip_grad_norm_does(trainer, tmp_path: Path) -> None:
    steps, handle = _record()
    try:
        trainer(tmp_path / "free", epochs=1)
        free = list(steps)
        trainer(tmp_path / "clipped", epochs=1, clip_grad_norm=0.05)
    finally:
        handle.remove()
    clipped = steps[len(free):]
    assert len(clipped) == len(free) and free[0][1] > 0.2  # the bound binds: the first norm is several times larger
    assert all(norm <= 0.05 * (1 + 1e-5) for _, norm, _ in clipped)
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in free[0][2]]  # the same first step (same weights,
    for p, g in zip(params, free[0][2]):  # same batch), its grads clipped by torch
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, 0.05)
    assert all(torch.allclose(p.grad, g, rtol=1e-5, atol=1e-9) for p, g in zip(params, clipped[0][2]))


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the code under test catches it."""


def test_a_run_killed_mid_schedule_resumes_onto_the_same_curve(trainer, tmp_path: Path, monkeypatch) -> None:
    mid = dataclasses.replace(trainer, config=TrainConfig(device="cpu", checkpoint_every=7))
    options = dict(epochs=2, lr_dense=0.05, clip_grad_norm=0.5,
                   schedule=LRSchedule(warmup_steps=10, decay="step", decay_steps=5, decay_rate=0.5))
    reference = mid(tmp_path / "reference", **options)
    saves = 0
    real = loop.checkpoint.save

    def save_then_die(*args, **kwargs):
        nonlocal saves
        real(*args, **kwargs)
        saves += 1
        if saves == 2:  # after step 14: mid warm-up is over, mid-decay, mid first epoch
            raise Killed

    with monkeypatch.context() as m, pytest.raises(Killed):
        m.setattr(loop.checkpoint, "save", save_then_die)
        mid(tmp_path / "killed", **options)
    resumed = mid(tmp_path / "killed", **options)
    assert [r["val_auc"] for r in resumed.history] == [r["val_auc"] for r in reference.history]
    expected, got = weights(reference), weights(resumed)
    assert all(torch.equal(got[n], expected[n]) for n in expected)


@pytest.mark.parametrize(("raw", "message"), [
    ({"clip_grad_norm": 0.0}, "dlrm.optim.clip_grad_norm: must be a finite number > 0"),
    ({"schedule": {"decay": "cosine"}}, "dlrm.optim.schedule.decay_steps: must be >= 1 with decay = 'cosine'"),
    ({"schedule": {"decay": "linear"}}, "dlrm.optim.schedule.decay: 'linear' is not one of 'none', 'cosine', 'step'"),
    ({"schedule": {"decay": "step", "decay_steps": 3, "decay_rate": 2.0}},
     "dlrm.optim.schedule.decay_rate: must be in (0, 1]"),
    ({"schedule": {"warmup": 10}}, "dlrm.optim.schedule.warmup: unknown key (allowed: warmup_steps, decay,"),
    ({"schedule": {"min_ratio": -0.5}}, "dlrm.optim.schedule.min_ratio: must be in [0, 1]"),
])
def test_a_bad_schedule_or_bound_is_one_line_naming_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(OptimConfig, raw, "dlrm.optim")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
