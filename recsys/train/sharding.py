"""Shard a model's EmbeddingBagCollections with TorchRec's planner and DistributedModelParallel.

Embedding tables get a fused row-wise Adagrad that runs inside the backward pass (TorchRec's
FBGEMM path); the dense part is data parallel and gets a standard optimizer from the caller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.optim import _apply_optimizer_in_backward as apply_optimizer_in_backward
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardingPlan
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from recsys.errors import require
from recsys.train.distributed import DistEnv

ShardingType = Literal["auto", "data_parallel", "table_wise", "column_wise", "table_column_wise",
                       "row_wise", "table_row_wise"]
CUDA_ONLY = {"row_wise", "table_row_wise"}


@dataclass(frozen=True)
class ShardingConfig:
    """`default` applies to every table; `tables` overrides it per table (table name -> type).

    `column_shard_dim` is the narrowest column-wise shard (TorchRec's default is 128, so narrower
    tables would stay in one piece); 0 keeps TorchRec's default.
    """

    default: ShardingType = "auto"
    tables: dict[str, ShardingType] = field(default_factory=dict)
    column_shard_dim: int = 0

    def __post_init__(self) -> None:
        require(self.column_shard_dim >= 0, "column_shard_dim", "must be >= 0")

    def constraints(self, table_names: list[str], device: torch.device) -> dict[str, ParameterConstraints]:
        """Planner constraints; checked against the model's tables and the device (keys as in the config)."""
        unknown = sorted(set(self.tables) - set(table_names))
        require(not unknown, f"train.sharding.tables.{unknown[0] if unknown else ''}",
                f"no such table (tables: {', '.join(table_names)})")
        out = {}
        for name in table_names:
            sharding_type = self.tables.get(name, self.default)
            key = f"train.sharding.tables.{name}" if name in self.tables else "train.sharding.default"
            require(device.type == "cuda" or sharding_type not in CUDA_ONLY, key,
                    f"{sharding_type} sharding is CUDA-only in TorchRec 1.8; use table_wise or column_wise on CPU")
            if sharding_type != "auto":
                out[name] = ParameterConstraints(sharding_types=[sharding_type],
                                                 min_partition=self.column_shard_dim or None)
        return out


def table_names(model: nn.Module) -> list[str]:
    return [cfg.name for m in model.modules() if isinstance(m, EmbeddingBagCollection)
            for cfg in m.embedding_bag_configs()]


def shard(model: nn.Module, env: DistEnv, config: ShardingConfig, sparse_lr: float) -> DistributedModelParallel:
    """Wrap `model` (built on the meta device) in DMP with a planned sharding and fused sparse optimizer."""
    ebc_params = [p for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()]
    apply_optimizer_in_backward(RowWiseAdagrad, ebc_params, {"lr": sparse_lr})
    plan = plan_sharding(model, env, config)
    return DistributedModelParallel(module=model, device=env.device, plan=plan,
                                    sharders=[EmbeddingBagCollectionSharder()])


def plan_sharding(model: nn.Module, env: DistEnv, config: ShardingConfig) -> ShardingPlan:
    topology = Topology(world_size=env.world_size, compute_device=env.device.type,
                        local_world_size=env.world_size if env.device.type == "cpu" else None)
    planner = EmbeddingShardingPlanner(topology=topology,
                                       constraints=config.constraints(table_names(model), env.device))
    return planner.collective_plan(model, [EmbeddingBagCollectionSharder()], dist.GroupMember.WORLD)


def dense_parameters(dmp: DistributedModelParallel) -> dict[str, torch.Tensor]:
    """Parameters not updated by the fused in-backward embedding optimizer."""
    return dict(in_backward_optimizer_filter(dmp.named_parameters()))


def placements(plan: ShardingPlan) -> dict[str, tuple[str, list[int]]]:
    """table -> (sharding type, ranks holding a shard), for logs and tests."""
    out = {}
    for module_plan in plan.plan.values():
        for table, ps in module_plan.items():
            ranks = sorted({s.placement.rank() for s in ps.sharding_spec.shards}) if ps.sharding_spec else []
            out[table] = (ps.sharding_type, ranks)
    return out
