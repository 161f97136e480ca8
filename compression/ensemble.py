"""An ensemble teacher for distillation: several click models (seeds, or DLRM and DCN) as one,
scoring each row by the mean of their logits.

Its members are exported ranking models of one schema (other runs of the same data); the first
is the run's own teacher, the one a warm-started student starts from (`lead`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchrec.datasets.utils import Batch

from compression.tables import float_tables
from recsys.errors import ConfigError, UserError
from recsys.serving.export import load_model

RANKERS = ("dlrm",)  # exported kinds an ensemble may hold: click models scored one logit per row


class EnsembleTeacher(nn.Module):
    """`score(batch)`: the mean of the members' logits, one per row; `forward_tasks(batch)`: the
    mean of each head's logits, for members with a conversion head (a multi-task DLRM)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def score(self, batch: Batch) -> torch.Tensor:
        return torch.stack([m.score(batch) for m in self.members]).mean(0)  # type: ignore[operator]

    def forward_tasks(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        heads = torch.stack([torch.stack(m.forward_tasks(batch)) for m in self.members]).mean(0)  # type: ignore[operator]
        return heads[0], heads[1]


def lead(teacher: nn.Module) -> nn.Module:
    """The model a student warm-starts from: an ensemble's first member, or the teacher itself."""
    return teacher.members[0] if isinstance(teacher, EnsembleTeacher) else teacher


def ensemble_of(teacher: nn.Module, folders: Sequence[str | Path], key: str = "distill.ensemble") -> nn.Module:
    """`teacher` averaged with the exported ranking models in `folders` (the teacher alone if none);
    ConfigError naming `key`[i] for a folder that does not load, is no ranking model, or whose
    tables differ from the teacher's (another data set or schema)."""
    if not folders:
        return teacher
    shapes = _table_shapes(teacher)
    members = [teacher]
    for i, folder in enumerate(folders):
        try:
            exported = load_model(folder)
        except UserError as e:
            raise ConfigError(f"{key}[{i}]: {e}") from None
        if exported.kind not in RANKERS:
            raise ConfigError(f"{key}[{i}]: {folder} is a {exported.kind} model; an ensemble teacher averages "
                              f"click logits ({', '.join(RANKERS)})")
        if _table_shapes(exported.model) != shapes:
            raise ConfigError(f"{key}[{i}]: {folder} has other tables than the teacher (another data set or schema)")
        if _heads(exported.model) != _heads(teacher):
            raise ConfigError(f"{key}[{i}]: {folder} has {_heads(exported.model)} head(s), the teacher "
                              f"{_heads(teacher)} (a conversion head on both or neither)")
        members.append(exported.model.eval())
    return EnsembleTeacher(members)


def _heads(model: nn.Module) -> int:
    """2 for a DLRM with a conversion head, else 1."""
    return 1 if getattr(model, "conversion", None) is None else 2


def _table_shapes(model: nn.Module) -> dict[str, int]:
    """Each embedding table's rows, by name (the ids a batch may hold)."""
    return {name: t.num_embeddings for name, t in float_tables(model).items()}
