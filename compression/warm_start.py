"""Progressive learning: a student starts from the teacher's weights instead of from scratch.

Each embedding table of the student (same rows, dim k) starts from the teacher's table E (n x d):
`truncate` keeps E's first k columns; `svd` projects E on its top k right singular vectors
(E V_k = U_k S_k, the rank-k coordinates that keep the most of E's energy). Every other parameter
whose name and shape match the teacher's (an MLP the student keeps) is copied; the rest keep their
fresh initialisation. A student wider than the teacher gets E in its first d columns.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from compression.tables import embedding_prefixes, float_tables

WarmStart = Literal["none", "truncate", "svd"]


def project(weight: torch.Tensor, dim: int, how: WarmStart) -> torch.Tensor:
    """`weight` (n x d) brought to n x `dim` columns by `how` (zeros beyond d)."""
    out = torch.zeros(weight.shape[0], dim, dtype=weight.dtype)
    kept = min(dim, weight.shape[1])
    if how == "svd" and kept < weight.shape[1]:
        _, _, vh = torch.linalg.svd(weight.double(), full_matrices=False)
        rank = min(kept, vh.shape[0])  # a table of fewer rows than `dim` has no more directions (the rest: 0)
        out[:, :rank] = (weight.double() @ vh[:rank].T).to(weight.dtype)
    else:
        out[:, :kept] = weight[:, :kept]
    return out


@torch.no_grad()
def warm_start(student: nn.Module, teacher: nn.Module, how: WarmStart) -> list[str]:
    """Copy `teacher` into `student` as `how` says (nothing for "none"); returns the names of the
    student's parameters that now come from the teacher. Both are float recsys models of one schema."""
    if how == "none":
        return []
    source = float_tables(teacher)
    copied = []
    prefixes = embedding_prefixes(student)
    for name, table in float_tables(student).items():
        if name not in source:
            raise ValueError(f"warm start: the teacher has no table {name!r} (tables: {', '.join(source)})")
        ebc = student.get_submodule(table.module)
        weight = ebc.embedding_bags[name].weight  # type: ignore[index,union-attr]
        weight.copy_(project(source[name].weight, table.dim, how).to(weight.device))
        copied.append(f"{table.module}.embedding_bags.{name}.weight".lstrip("."))
    theirs = dict(teacher.named_parameters())
    for name, param in student.named_parameters():
        if not name.startswith(prefixes) and name in theirs and theirs[name].shape == param.shape:
            param.copy_(theirs[name].to(param.device))
            copied.append(name)
    return copied
