"""Factorization: a table E (n x d) becomes A (n x r) times B (r x d).

A and B come from E's truncated SVD, E ~ U_r S_r V_r^T: A = U_r S_r, B = V_r^T. B's rows are
orthonormal, so A's rows keep the norms of E's rows projected on them and an error in A (pruning,
quantization) is the same error in E; by Eckart-Young the fit's squared error is the sum of the
discarded squared singular values. With `fine_tune`, the model holding A in a float EBC and B as a
parameter (`FactorizedEBC`) is trained against the teacher (or an ensemble teacher, by
`fine_tune.ensemble`) by distillation's own loop, and A, B and its dense layers are read back. A
is then an ordinary narrower table that the later steps prune and quantize; B stays fp32 and is
counted with its table (`PackedTable.bytes`).

`rank` factorizes every table where A and B take fewer bytes than E when A and E are both int8
(B is fp32: on a table of a few dozen rows B alone outweighs E, and the common int8 A is the fair
case; fp32 A saves more, int2 A may save less); `ranks` factorizes the tables it names at their ranks.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn
from torchrec import EmbeddingBagCollection

from compression.config import FactorizeConfig
from compression.distill import train_student
from compression.ensemble import ensemble_of
from compression.tables import FloatTable, ebc_paths, float_tables, load_tables, logical_weight
from recsys.errors import ConfigError
from recsys.models.factorized import FactorizedEBC
from recsys.serving.size import table_bytes
from recsys.train.tasks import Task


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A [n, rank] and B [rank, d] whose product is the best rank-`rank` approximation of `weight`
    (least Frobenius error), from its SVD in float64."""
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    u = u.contiguous()  # LAPACK's is column-major: its products would be too, and a row-major TBE row is read as bytes
    return (u[:, :rank] * s[:rank]).float(), vh[:rank].float().contiguous()


SAVINGS_PRECISION = "int8"  # the precision `rank` compares A and E at


def _saves_bytes(table: FloatTable, rank: int) -> bool:
    factorized = table_bytes(table.num_embeddings, rank, SAVINGS_PRECISION, map_dim=table.dim).total
    return factorized < table_bytes(table.num_embeddings, table.dim, SAVINGS_PRECISION).total


def table_ranks(config: FactorizeConfig, tables: dict[str, FloatTable]) -> dict[str, int]:
    """The rank of every table to factorize; ConfigError naming the key for an unknown table or a
    rank not below the table's dim."""
    unknown = sorted(set(config.ranks) - set(tables))
    if unknown:
        raise ConfigError(f"factorize.ranks.{unknown[0]}: no such table (tables: {', '.join(tables)})")
    for name, rank in config.ranks.items():
        _check_rank(f"factorize.ranks.{name}", rank, tables[name])
    ranks = dict(config.ranks)
    for name, table in tables.items():
        if config.rank is not None and name not in ranks:
            _check_rank("factorize.rank", config.rank, table)
            if _saves_bytes(table, config.rank):
                ranks[name] = config.rank
    return ranks


def _check_rank(key: str, rank: int, table: FloatTable) -> None:
    if rank >= table.dim:
        raise ConfigError(f"{key}: rank {rank} must be below table {table.name}'s dim {table.dim}")


def factorize_tables(tables: dict[str, FloatTable], ranks: dict[str, int]) -> dict[str, FloatTable]:
    """`tables` with those in `ranks` as A (their rows) and B (their projection), from the SVD."""
    out = dict(tables)
    for name, rank in ranks.items():
        table = tables[name]
        if table.remap is not None or table.projection is not None:
            raise ValueError(f"table {name}: factorize needs whole, unfactorized rows")
        a, b = svd_factors(table.weight, rank)
        out[name] = dataclasses.replace(table, weight=a, projection=b)
    return out


def factorized_model(model: nn.Module, tables: dict[str, FloatTable]) -> nn.Module:
    """A copy of `model` (a float model) whose EBCs hold the tables' rows, A for factorized ones,
    followed by their maps: the model the fine-tuning trains."""
    out = copy.deepcopy(model)
    for path, ebc in ebc_paths(out).items():
        configs = [dataclasses.replace(c, embedding_dim=tables[c.name].dim) for c in ebc.embedding_bag_configs()]
        inner = EmbeddingBagCollection(tables=configs, device=torch.device("cpu"))
        with torch.no_grad():
            for c in configs:
                inner.embedding_bags[c.name].weight.copy_(tables[c.name].weight)
        maps = {c.name: b for c in configs if (b := tables[c.name].projection) is not None}
        parent, _, attr = path.rpartition(".")
        setattr(out.get_submodule(parent), attr, FactorizedEBC(inner, maps) if maps else inner)
    return out


def read_back(trained: nn.Module, tables: dict[str, FloatTable]) -> dict[str, FloatTable]:
    """The tables (A and B) of a model `factorized_model` made, after training."""
    weights = float_tables(trained)
    maps = {n: b.detach().clone() for m in trained.modules() if isinstance(m, FactorizedEBC) for n, b in m.maps.items()}
    return {n: dataclasses.replace(t, weight=weights[n].weight.clone(), projection=maps.get(n))
            for n, t in tables.items()}


def with_tables(model: nn.Module, dense_from: nn.Module, tables: dict[str, FloatTable]) -> nn.Module:
    """A copy of float `model` with the dense layers of `dense_from` (if it is another model) and
    `tables` written into its EBCs (factorized ones multiplied out), so it computes what the variant does."""
    out = copy.deepcopy(dense_from)
    if dense_from is not model:  # its EBCs are factorized ones: put float EBCs of `model`'s shape back
        for path in ebc_paths(model):
            parent, _, attr = path.rpartition(".")
            setattr(out.get_submodule(parent), attr, copy.deepcopy(model.get_submodule(path)))
    load_tables(out, tables)
    return out


def fit_errors(before: dict[str, FloatTable], after: dict[str, FloatTable], ranks: dict[str, int]) -> dict[str, float]:
    """Per factorized table, ||E - A B|| / ||E|| (Frobenius)."""
    return {name: float((before[name].weight - logical_weight(after[name])).norm()
                         / before[name].weight.norm().clamp(min=1e-12)) for name in ranks}


def factorize(config: FactorizeConfig, teacher: nn.Module, model: nn.Module, tables: dict[str, FloatTable],
              task: Task | None, progress: bool = False,
              key: str = "factorize") -> tuple[nn.Module, dict[str, FloatTable], dict[str, Any]]:
    """The model (dense layers, fine-tuned or not, and E = A B in its float EBCs), its tables with
    the chosen ones factorized, and notes (ranks, relative fit errors before fine-tuning). The
    fine-tuning learns from `teacher` averaged with `fine_tune.ensemble`'s models (errors name
    `key`.fine_tune.ensemble[i]); the SVD fit is always of `model`'s own tables."""
    ranks = table_ranks(config, tables)
    factorized = factorize_tables(tables, ranks)
    notes: dict[str, Any] = {"ranks": ranks, "svd_relative_error": fit_errors(tables, factorized, ranks)}
    dense_from = model
    if config.fine_tune is not None:
        if task is None:
            raise ConfigError("factorize.fine_tune: needs the training data")
        start = factorized
        teachers = ensemble_of(teacher, config.fine_tune.ensemble, f"{key}.fine_tune.ensemble")
        dense_from = train_student(lambda: factorized_model(model, start), teachers, task, config.fine_tune, progress)
        factorized = read_back(dense_from, factorized)
    return with_tables(model, dense_from, factorized), factorized, notes
