"""Distillation's starting points and teachers, measured side by side on one exported teacher.

1. progressive: the same student, seed and batches distilled from scratch, and warm-started from
   the teacher (tables truncated, or SVD-projected, to the student's dim), at each epoch budget.
2. ensemble: the same student distilled from the teacher alone and from an ensemble (the teacher
   and teachers of its architecture trained here on the same train split with other seeds,
   logits averaged); every teacher's and the ensemble's own test AUC too.

    python bench/distill_teachers.py --teacher runs/bench_compression/movielens_compress/dlrm/model
"""
from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from compression.build import teacher_of, teacher_task
from compression.config import DistillConfig
from compression.distill import train_student
from compression.ensemble import EnsembleTeacher
from recsys.config_loading import from_dict
from recsys.data.config import DataConfig
from recsys.data.sources import load_dataset
from recsys.models.registry import build_model
from recsys.serving.export import load_model

STUDENT = {"embedding_dim": 16, "dense_arch": [64, 16], "over_arch": [64, 32, 1]}  # movielens_compress's "best"
DISTILL = DistillConfig(student=STUDENT, alpha=0.3, epochs=4, lr_sparse=0.03, seed=0)


def progressive(exported: Any, task: Any, budgets: list[int]) -> list[dict[str, Any]]:
    build, _ = teacher_of(exported).student_builder(STUDENT)
    rows = []
    for epochs in budgets:
        for start in ("none", "truncate", "svd"):
            began = time.perf_counter()
            student = train_student(build, exported.model, task, replace(DISTILL, epochs=epochs), start=start)
            auc = task.evaluate(student, "test", 4096)["auc"]
            rows.append({"epochs": epochs, "start": start, "auc": auc, "seconds": time.perf_counter() - began})
            print(f"progressive  epochs {epochs}  start {start:8s}  student test AUC {auc:.4f}", flush=True)
    return rows


def ensemble(exported: Any, task: Any, seeds: list[int], teacher_epochs: int) -> dict[str, Any]:
    def build() -> torch.nn.Module:
        return build_model(exported.kind, exported.schema, exported.config, torch.device("cpu"))

    members = [exported.model.eval()]
    aucs = {"teacher": task.evaluate(exported.model, "test", 4096)["auc"]}
    for seed in seeds:
        labels_only = DistillConfig(alpha=1.0, epochs=teacher_epochs, lr_sparse=0.03, seed=seed)
        members.append(train_student(build, None, task, labels_only).eval())
        aucs[f"seed {seed}"] = task.evaluate(members[-1], "test", 4096)["auc"]
        print(f"ensemble     member seed {seed} ({teacher_epochs} epochs)  test AUC {aucs[f'seed {seed}']:.4f}",
              flush=True)
    teachers = EnsembleTeacher(members)
    aucs["ensemble"] = task.evaluate(teachers, "test", 4096)["auc"]
    student_build, _ = teacher_of(exported).student_builder(STUDENT)
    students = {name: task.evaluate(train_student(student_build, t, task, DISTILL), "test", 4096)["auc"]
                for name, t in (("single", exported.model), ("ensemble", teachers))}
    for name, auc in {**{f"teacher {k}": v for k, v in aucs.items()},
                      **{f"student of {k}": v for k, v in students.items()}}.items():
        print(f"ensemble     {name:22s} test AUC {auc:.4f}", flush=True)
    return {"teachers": aucs, "students": students}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="an exported DLRM folder (<run>/dlrm/model)")
    parser.add_argument("--parts", nargs="+", default=["progressive", "ensemble"], choices=["progressive", "ensemble"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[1, 4], help="student epochs (progressive)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="the ensemble's other teachers")
    parser.add_argument("--teacher-epochs", type=int, default=4)
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
        result["progressive"] = progressive(exported, task, args.budgets)
    if "ensemble" in args.parts:
        result["ensemble"] = ensemble(exported, task, args.seeds, args.teacher_epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
