"""Export a trained (sharded) model as one unsharded CPU folder, and load it back safely.

The folder holds `model.pt` (a plain state dict, loaded with weights_only=True, so no pickled
code runs) and `model.json` (kind, schema, model config, provenance, and model.pt's SHA-256):
everything needed to rebuild the model without the run's config. Compression reads teachers from
here. Loading checks model.json key by key and model.pt against its checksum before reading it,
so a corrupt or modified folder is one CheckpointError line naming the file.
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
from recsys.errors import CheckpointError, ConfigError
from recsys.integrity import field, first_line, load_tensors, read_json, sha256, verify
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
            info = {"kind": kind, "schema": schema_to_dict(schema), "config": config, **meta,
                    "model_sha256": sha256(tmp / "model.pt")}
            (tmp / "model.json").write_text(json.dumps(info, indent=1))
    dist.barrier()


def load_model(folder: Path | str) -> ExportedModel:
    """Rebuild an exported model on CPU; a missing or corrupt folder is a CheckpointError."""
    folder = Path(folder)
    info_path, weights = folder / "model.json", folder / "model.pt"
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no exported model there")
    info = read_json(info_path)
    kind, config = field(info, "kind", str, info_path), field(info, "config", dict, info_path)
    if "model_sha256" not in info:
        raise CheckpointError(f"{info_path}: records no checksum of model.pt (exported by an older version); "
                              "export it again (recsys run --force)")
    verify(weights, field(info, "model_sha256", str, info_path))
    state = load_tensors(weights)
    try:
        schema = schema_from_dict(field(info, "schema", dict, info_path))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{info_path}: 'schema' is not a feature schema ({first_line(e)})") from None
    try:
        model = build_model(kind, schema, config, torch.device("cpu"))
    except (ConfigError, KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"{info_path}: 'kind', 'schema' and 'config' do not make a model "
                              f"({first_line(e)})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: does not match model.json ({first_line(e)})") from None
    model.eval()
    return ExportedModel(kind, schema, config, model, model_meta(info))


def model_meta(info: dict[str, Any]) -> dict[str, Any]:
    """What model.json records beside the model itself: test metrics, provenance, the run config,
    model.pt's checksum (so a variant names the exact teacher it came from)."""
    return {k: v for k, v in info.items() if k not in ("kind", "schema", "config")}
