"""Distillation's starting points and teachers, measured side by side on one exported teacher.

1. progressive: the same student, seed and batches distilled from scratch, and warm-started from
   the teacher (tables truncated, or SVD-projected, to the student's dim), at each epoch budget.
2. ensemble: the same student distilled from the teacher alone and from an ensemble (the teacher
   and teachers trained here as it was, by the training loop with its run's settings, on the same
   split, with other seeds or DCN; logits averaged); every teacher's and the ensemble's test AUC.

    python bench/distill_teachers.py --teacher runs/bench_compression/movielens_compress/dlrm/model
"""
from __future__ import annotations

import argparse
import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.build import teacher_of, teacher_task
from compression.config import DistillConfig
from compression.distill import train_student
from compression.ensemble import ensemble_of
from recsys.config_loading import from_dict, to_dict
from recsys.data.config import DataConfig
from recsys.data.sources import load_dataset
from recsys.metrics.ctr import paired_auc_difference
from recsys.models.dlrm import DLRMConfig, DLRMRanker
from recsys.serving.export import export_model, load_model
from recsys.train.config import OptimConfig, TrainConfig
from recsys.train.distributed import init_distributed
from recsys.train.loop import train
from recsys.train.tasks import ClickTask, predict

STUDENT = {"embedding_dim": 16, "dense_arch": [64, 16], "over_arch": [64, 32, 1]}  # movielens_compress's "best"
DISTILL = DistillConfig(student=STUDENT, alpha=0.3, epochs=4, lr_sparse=0.03, seed=0)


@torch.no_grad()
def _logits(model: torch.nn.Module, task: Any) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = predict(model, task.dataset, "test", 4096)
    keep = labels.numpy() >= 0
    return labels.numpy()[keep], logits.numpy()[keep]


def _versus(labels: np.ndarray, base: np.ndarray, other: np.ndarray) -> str:
    d = paired_auc_difference(labels, base, other, rounds=200)
    return f"{d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"


def progressive(exported: Any, task: Any, budgets: list[int], seeds: list[int]) -> list[dict[str, Any]]:
    """Per budget and student seed: test AUC from scratch and warm-started, and each warm start's
    paired AUC difference to the same seed's student from scratch (95% bootstrap interval)."""
    build, _ = teacher_of(exported).student_builder(STUDENT)
    rows = []
    for epochs in budgets:
        for seed in seeds:
            scores = {}
            for start in ("none", "truncate", "svd"):
                student = train_student(build, exported.model, task, replace(DISTILL, epochs=epochs, seed=seed),
                                        start=start)
                labels, scores[start] = _logits(student, task)
                auc = task.evaluate(student, "test", 4096)["auc"]
                versus = _versus(labels, scores["none"], scores[start]) if start != "none" else ""
                rows.append({"epochs": epochs, "seed": seed, "start": start, "auc": auc, "vs_scratch": versus})
                print(f"progressive  epochs {epochs}  seed {seed}  start {start:8s}  student test AUC {auc:.4f}  "
                      f"{versus}", flush=True)
    return rows


def loop_member(exported: Any, dataset: Any, arch: str, seed: int, out: Path) -> Path:
    """A teacher trained as the exported one was (its run's [train] and dlrm.optim, through the
    training loop) on the same split, with another init seed (or arch); its exported folder."""
    experiment = exported.meta["experiment"]
    model = from_dict(DLRMConfig, {**experiment["dlrm"]["model"], "arch": arch}, "--members")
    optim = from_dict(OptimConfig, experiment["dlrm"]["optim"], "dlrm.optim")
    train_config = replace(from_dict(TrainConfig, experiment["train"], "train"), device="cpu")
    folder = out / f"{arch}-seed{seed}"
    if not (folder / "model").exists():
        task = ClickTask("dlrm", dataset, lambda d: DLRMRanker(dataset.schema, model, d))
        result = train(task, dataset, optim, train_config, init_distributed("cpu"), folder, f"{arch}-{seed}", seed,
                       resume=False)
        export_model(result.model, "dlrm", dataset.schema, to_dict(model), folder / "model", {"test": result.test})
    return folder / "model"


def ensemble(exported: Any, task: Any, members: list[str], out: Path, seeds: list[int]) -> dict[str, Any]:
    """Students (of each seed) distilled from the teacher alone and from the ensemble of it and
    `members` (arch:seed), each member trained as the teacher was; every teacher's test AUC."""
    folders = [loop_member(exported, task.dataset, m.split(":")[0], int(m.split(":")[1]), out) for m in members]
    teachers = ensemble_of(exported.model, folders, "--members")
    aucs = {"teacher": task.evaluate(exported.model, "test", 4096)["auc"]}
    for name, folder in zip(members, folders):
        aucs[name] = task.evaluate(load_model(folder).model, "test", 4096)["auc"]
    aucs["ensemble"] = task.evaluate(teachers, "test", 4096)["auc"]
    student_build, _ = teacher_of(exported).student_builder(STUDENT)
    students: dict[str, float] = {}
    versus = {}
    for seed in seeds:
        scores = {}
        for name, t in (("single", exported.model), ("ensemble", teachers)):
            student = train_student(student_build, t, task, replace(DISTILL, seed=seed))
            students[f"{name} seed {seed}"] = task.evaluate(student, "test", 4096)["auc"]
            labels, scores[name] = _logits(student, task)
        versus[seed] = _versus(labels, scores["single"], scores["ensemble"])
    for name, auc in {**{f"teacher {k}": v for k, v in aucs.items()},
                      **{f"student of {k}": v for k, v in students.items()}}.items():
        print(f"ensemble     {name:26s} test AUC {auc:.4f}", flush=True)
    for seed, text in versus.items():
        print(f"ensemble     student seed {seed}: of the ensemble - of the single teacher: {text}", flush=True)
    return {"teachers": aucs, "students": students, "ensemble_vs_single": versus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="an exported DLRM folder (<run>/dlrm/model)")
    parser.add_argument("--parts", nargs="+", default=["progressive", "ensemble"], choices=["progressive", "ensemble"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[1, 4], help="student epochs (progressive)")
    parser.add_argument("--student-seeds", nargs="+", type=int, default=[0], help="students per budget or teacher")
    parser.add_argument("--members", nargs="+", default=["dlrm:1", "dlrm:2"],
                        help="the ensemble's other teachers, arch:seed (dlrm or dcn)")
    parser.add_argument("--members-dir", type=Path, default=Path("runs/distill_teachers"))
    parser.add_argument("--out", type=Path, default=Path("runs/distill_teachers.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    exported = load_model(args.teacher)
    experiment = exported.meta["experiment"]
    dataset = load_dataset(from_dict(DataConfig, experiment["data"], "data"), experiment["seed"])
    task = teacher_task(exported, dataset)
    print(f"teacher {args.teacher} {exported.config}; student {STUDENT}; distill {DISTILL}", flush=True)
    result: dict[str, Any] = {"teacher": str(args.teacher), "student": STUDENT, "distill": repr(DISTILL)}
    if "progressive" in args.parts:
        result["progressive"] = progressive(exported, task, args.budgets, args.student_seeds)
    if "ensemble" in args.parts:
        result["ensemble"] = ensemble(exported, task, args.members, args.members_dir, args.student_seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
