"""Export a trained (sharded) model as one unsharded CPU folder, and load it back safely.

The folder holds `model.pt` (a plain state dict, loaded with weights_only=True, so no pickled
code runs) and `model.json` (kind, schema, model config, provenance): everything needed to
rebuild the model without the run's config. Compression reads teachers from here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torchrec.inference.state_dict_transform import state_dict_gather, state_dict_to_device

from recsys.atomic import staged_folder
from recsys.data.schema import Schema
from recsys.errors import CheckpointError
from recsys.models.registry import build_model, schema_from_dict, schema_to_dict


@dataclass
class ExportedModel:
    kind: str
    schema: Schema
    config: dict[str, Any]
    model: nn.Module
    meta: dict[str, Any]


def export_model(sharded: nn.Module, kind: str, schema: Schema, config: dict[str, Any], folder: Path,
                 meta: dict[str, Any]) -> None:
    """Gather every shard to rank 0 and write `folder` there (atomically); all ranks must call."""
    plain = build_model(kind, schema, config, torch.device("cpu"))
    dst = plain.state_dict()
    src = state_dict_to_device(sharded.state_dict(), dist.group.WORLD, torch.device("cpu"))
    state_dict_gather(src, dst)
    if dist.get_rank() == 0:
        with staged_folder(folder) as tmp:
            torch.save(dst, tmp / "model.pt")
            info = {"kind": kind, "schema": schema_to_dict(schema), "config": config, **meta}
            (tmp / "model.json").write_text(json.dumps(info, indent=1))
    dist.barrier()


def load_model(folder: Path | str) -> ExportedModel:
    """Rebuild an exported model on CPU; a missing or corrupt folder is a CheckpointError."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "model.json").read_text())
        state = torch.load(folder / "model.pt", weights_only=True, map_location="cpu")
    except (OSError, json.JSONDecodeError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"{folder}: not a readable exported model ({str(e).splitlines()[0][:160]})") from None
    schema = schema_from_dict(info["schema"])
    model = build_model(info["kind"], schema, info["config"], torch.device("cpu"))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0][:160]
        raise CheckpointError(f"{folder / 'model.pt'}: does not match model.json ({first})") from None
    model.eval()
    return ExportedModel(info["kind"], schema, info["config"], model, model_meta(info))


def model_meta(info: dict[str, Any]) -> dict[str, Any]:
    """What model.json records beside the model itself: test metrics, provenance, the run config."""
    return {k: v for k, v in info.items() if k not in ("kind", "schema", "config")}
