"""Ensemble teacher: it scores each row by the mean of its members' logits, the distillation target
is the sigmoid of that mean at temperature T, a student distilled from it differs from one
distilled from its first member alone, factorize's and mixed_dim's fine-tuning learn from it
(`fine_tune.ensemble`; a warm start stays refused there), and a bad member folder is one line
naming its key; a multi-task ensemble averages each head, and mixes no one-headed member in."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from compression import factorize as factorize_step
from compression.build import teacher_of, teacher_task
from compression.config import DistillConfig, VariantConfig
from compression.distill import train_student
from compression.ensemble import EnsembleTeacher, ensemble_of, lead
from compression.recipe import build_variant
from recsys.config_loading import from_dict
from recsys.errors import ConfigError
from recsys.integrity import sha256
from recsys.models.registry import build_model, schema_to_dict
from tests.compression.conftest import MODEL_CONFIGS, SCHEMA, TINY_CONFIGS


def _member(exported, seed: int):
    """The teacher's architecture with other weights (another seed's teacher)."""
    torch.manual_seed(seed)
    model = build_model(exported.kind, exported.schema, exported.config, torch.device("cpu"))
    model.load_state_dict({k: v + 0.1 * torch.randn_like(v) for k, v in exported.model.state_dict().items()})
    return model.eval()


def _export(folder: Path, kind: str, schema, config: dict, model) -> Path:
    """An exported-model folder as recsys.serving.export writes it (model.pt, model.json)."""
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "model.pt")
    info = {"kind": kind, "schema": schema_to_dict(schema), "config": config,
            "model_sha256": sha256(folder / "model.pt")}
    (folder / "model.json").write_text(json.dumps(info))
    return folder


@pytest.fixture
def members(tiny_exported):
    exported = tiny_exported("dlrm")
    return exported, [exported.model.eval(), _member(exported, 1), _member(exported, 2)]


def test_the_ensemble_scores_the_mean_of_its_members_logits(members, tiny_dataset) -> None:
    _, models = members
    batch = next(iter(tiny_dataset.batches("test", 300)))
    with torch.no_grad():
        each = np.stack([m.score(batch).double().numpy() for m in models])
        got = EnsembleTeacher(models).score(batch).double().numpy()
    assert np.abs(each[0] - each[1]).mean() > 0.05  # the members disagree
    assert np.allclose(got, each.mean(0), atol=1e-6)


def test_the_soft_loss_targets_the_sigmoid_of_the_mean_logit(members, tiny_dataset) -> None:
    exported, models = members
    task = teacher_task(exported, tiny_dataset)
    batch = next(iter(tiny_dataset.batches("train", 200)))
    student = _member(exported, 3)
    with torch.no_grad():
        mean = np.mean([m.score(batch).double().numpy() for m in models], axis=0)
        s = student.score(batch).double().numpy() / 2.0
    p = 1 / (1 + np.exp(-mean / 2.0))
    by_hand = 4.0 * np.mean(np.logaddexp(0, s) - p * s)  # T^2 * BCE(sigmoid(s), p), T = 2
    loss = float(task.soft_loss(student, EnsembleTeacher(models), batch, 2.0))
    assert loss == pytest.approx(by_hand, rel=1e-5)


def test_distilling_from_the_ensemble_trains_another_student(members, tiny_dataset) -> None:
    exported, models = members
    task = teacher_task(exported, tiny_dataset)
    build, _ = teacher_of(exported).student_builder({"embedding_dim": 4, "dense_arch": [16, 4]})
    config = DistillConfig(alpha=0.0, epochs=1, batch_size=256)
    single = train_student(build, models[0], task, config)
    ensemble = train_student(build, EnsembleTeacher(models), task, config)
    assert any(not torch.equal(a, b) for a, b in zip(single.state_dict().values(), ensemble.state_dict().values()))


def test_ensemble_of_loads_exported_members(members, tmp_path: Path, tiny_dataset) -> None:
    exported, models = members
    folders = [_export(tmp_path / f"m{i}", "dlrm", exported.schema, exported.config, m)
               for i, m in enumerate(models[1:])]
    ensemble = ensemble_of(models[0], folders)
    batch = next(iter(tiny_dataset.batches("test", 100)))
    with torch.no_grad():
        assert torch.allclose(ensemble.score(batch), EnsembleTeacher(models).score(batch), atol=1e-6)
    assert ensemble_of(models[0], []) is models[0]
    assert lead(ensemble) is models[0] and lead(models[1]) is models[1]  # a warm start begins from the lead


def test_a_bad_member_is_one_line_naming_its_key(members, random_model, tmp_path: Path) -> None:
    exported, models = members
    other = _export(tmp_path / "other", "dlrm", SCHEMA, MODEL_CONFIGS["dlrm"], random_model("dlrm"))
    good = _export(tmp_path / "good", "dlrm", exported.schema, exported.config, models[1])
    tower_config = TINY_CONFIGS["two_tower"]
    tower = _export(tmp_path / "tower", "two_tower", exported.schema, tower_config,
                    build_model("two_tower", exported.schema, tower_config, torch.device("cpu")))
    for folders, message in [([good, tmp_path / "nowhere"], "distill.ensemble[1]: "),
                             ([tower], f"distill.ensemble[0]: {tower} is a two_tower model"),
                             ([good, good, other], f"distill.ensemble[2]: {other} has other tables than the teacher")]:
        with pytest.raises(ConfigError) as e:
            ensemble_of(models[0], folders)
        assert str(e.value).startswith(message) and "\n" not in str(e.value)


def _fine_tuned(step: str, fine_tune: dict) -> VariantConfig:
    """A `step` variant (factorize at rank 2, or mixed_dim at widths 2 of 8) fine-tuned by `fine_tune`."""
    shape = {"rank": 2} if step == "factorize" else {"budget_ratio": 2.0, "dims": [2]}
    return from_dict(VariantConfig, {"name": "v", "steps": [step], step: {**shape, "fine_tune": fine_tune}},
                     "compress.variants[0]")


@pytest.mark.parametrize("step", ["factorize", "mixed_dim"])
def test_factorized_fine_tuning_learns_from_the_ensemble(members, tmp_path: Path, tiny_dataset, monkeypatch,
                                                         step) -> None:
    """fine_tune.ensemble reaches the fine-tuning: the teacher it learns from scores the mean of the
    run's teacher and the member's logits; without it, the run's teacher alone."""
    exported, models = members
    folder = _export(tmp_path / "m1", "dlrm", exported.schema, exported.config, models[1])
    seen: list = []
    real = factorize_step.train_student

    def spy(build, teacher, task, config, progress=False, start="none"):
        seen.append(teacher)
        return real(build, teacher, task, config, progress, start)

    monkeypatch.setattr(factorize_step, "train_student", spy)
    task = teacher_task(exported, tiny_dataset)
    fine_tune = {"alpha": 0.0, "epochs": 1, "batch_size": 256}
    build_variant(teacher_of(exported), task, _fine_tuned(step, {**fine_tune, "ensemble": [str(folder)]}))
    build_variant(teacher_of(exported), task, _fine_tuned(step, fine_tune))
    batch = next(iter(tiny_dataset.batches("test", 200)))
    with torch.no_grad():
        assert torch.allclose(seen[0].score(batch), EnsembleTeacher(models[:2]).score(batch), atol=1e-6)
        assert not torch.allclose(seen[0].score(batch), models[0].score(batch), atol=1e-3)
    assert seen[1] is exported.model


@pytest.mark.parametrize("step", ["factorize", "mixed_dim"])
def test_under_fine_tuning_a_warm_start_is_refused_and_a_bad_member_named(members, tmp_path: Path, tiny_dataset,
                                                                          step) -> None:
    exported, _ = members
    with pytest.raises(ConfigError, match=rf"^compress.variants\[0\].{step}.fine_tune.warm_start: the SVD fit is "
                       "the start"):
        _fine_tuned(step, {"warm_start": "svd"})
    config = _fine_tuned(step, {"epochs": 1, "ensemble": [str(tmp_path / "nowhere")]})
    with pytest.raises(ConfigError) as e:
        build_variant(teacher_of(exported), teacher_task(exported, tiny_dataset), config)
    assert str(e.value).startswith(f"{step}.fine_tune.ensemble[0]: ") and "\n" not in str(e.value)


def _two_headed(exported, seed: int):
    torch.manual_seed(seed)
    config = {**exported.config, "conversion_arch": [8, 1]}
    return build_model("dlrm", exported.schema, config, torch.device("cpu")).eval(), config


def test_a_multi_task_ensemble_averages_each_head_and_refuses_a_one_headed_member(members, tmp_path: Path,
                                                                                    tiny_dataset) -> None:
    exported, one_headed = members
    (a, config), (b, _) = _two_headed(exported, 1), _two_headed(exported, 2)
    batch = next(iter(tiny_dataset.batches("test", 100)))
    with torch.no_grad():
        heads = [np.stack([h.double().numpy() for h in m.forward_tasks(batch)]) for m in (a, b)]
        got = np.stack([h.double().numpy() for h in EnsembleTeacher([a, b]).forward_tasks(batch)])
    assert np.abs(heads[0][1] - heads[1][1]).mean() > 0.01  # the members' conversion heads disagree
    assert np.allclose(got, (heads[0] + heads[1]) / 2, atol=1e-6)
    two = _export(tmp_path / "two", "dlrm", exported.schema, config, b)
    one = _export(tmp_path / "one", "dlrm", exported.schema, exported.config, one_headed[1])
    for teacher, folder, message in [(a, one, f"distill.ensemble[0]: {one} has 1 head(s), the teacher 2"),
                                     (one_headed[0], two, f"distill.ensemble[0]: {two} has 2 head(s), the teacher 1")]:
        with pytest.raises(ConfigError) as e:
            ensemble_of(teacher, [folder])
        assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert isinstance(ensemble_of(a, [two]), EnsembleTeacher)
