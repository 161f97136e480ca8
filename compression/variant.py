"""The variant store: one folder per variant with manifest.json and weights.pt, written atomically.

weights.pt is a plain dict of uint8/int32/float tensors (packed rows, fp16 scale|bias as bytes,
remaps, dense layers), so `torch.load(weights_only=True)` reads it without running pickled code
(UInt4Tensor would be refused). The manifest records the recipe, exact bytes per table, metrics,
latency and provenance, plus the weights' sha256: a corrupt or truncated folder is one
CheckpointError line. A folder is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression.scorer import CPU, CompressedScorer
from compression.size import size_report
from compression.tables import PackedTable
from recsys.atomic import staged_folder
from recsys.data.schema import Schema
from recsys.errors import CheckpointError
from recsys.models.registry import build_model, schema_from_dict, schema_to_dict
from recsys.provenance import provenance

FORMAT = 1
MANIFEST, WEIGHTS = "manifest.json", "weights.pt"
_TABLE_FIELDS = ("module", "feature_names", "pooling", "num_embeddings", "dim", "precision")


@dataclass
class Variant:
    """A compressed model before measurement: dense layers of `model` plus packed tables."""

    name: str
    kind: str
    schema: Schema
    model_config: dict[str, Any]
    model: nn.Module  # its float EBC weights are ignored; the packed tables replace them
    tables: dict[str, PackedTable]
    fp32_total: int  # bytes of the teacher's fp32 TBE: the reference of every ratio
    recipe: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. chosen precisions, student-alone metrics
    teacher: dict[str, Any] = field(default_factory=dict)  # the teacher's provenance: run config, test metrics

    def scorer(self, device: torch.device = CPU) -> CompressedScorer:
        return CompressedScorer(self.kind, self.model, self.tables, self.fp32_total, device)


def _dense_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".embedding_bags." not in k}


def _weights(variant: Variant) -> dict[str, torch.Tensor]:
    out = {f"dense.{k}": v.detach().cpu().contiguous() for k, v in _dense_state(variant.model).items()}
    for name, t in variant.tables.items():
        out[f"table.{name}.weight"] = t.weight.contiguous()
        if t.scale_bias is not None:
            out[f"table.{name}.scale_bias"] = t.scale_bias.contiguous()
        if t.remap is not None:
            out[f"table.{name}.remap"] = t.remap.contiguous()
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_variant(folder: Path | str, variant: Variant, metrics: dict[str, float],
                 latency: dict[str, Any], device: torch.device = CPU) -> dict[str, Any]:
    """Write `folder` atomically (temp folder, then rename); returns the manifest."""
    with staged_folder(Path(folder)) as tmp:
        return _write(tmp, variant, metrics, latency, device)


def _write(tmp: Path, variant: Variant, metrics: dict[str, float], latency: dict[str, Any],
           device: torch.device) -> dict[str, Any]:
    torch.save(_weights(variant), tmp / WEIGHTS)
    manifest = {
        "format": FORMAT, "name": variant.name, "kind": variant.kind, "schema": schema_to_dict(variant.schema),
        "model_config": variant.model_config, "recipe": variant.recipe, "notes": variant.notes,
        "teacher": variant.teacher,
        "tables": {n: {f: getattr(t, f) for f in _TABLE_FIELDS} | {"rows": t.rows, "pruned": t.remap is not None}
                   for n, t in variant.tables.items()},
        "size": size_report(variant.tables.values(), variant.fp32_total).to_dict(),
        "metrics": metrics, "latency": latency,
        "provenance": provenance(device), "weights_sha256": _sha256(tmp / WEIGHTS),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The manifest of a variant folder; CheckpointError if missing or not valid JSON."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable variant manifest ({_first_line(e)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a variant manifest of format {FORMAT}")
    return manifest


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:160]


def _load_weights(folder: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS
    try:
        if _sha256(path) != manifest.get("weights_sha256"):
            raise CheckpointError(f"{path}: checksum does not match the manifest (corrupt or truncated)")
        return torch.load(path, weights_only=True, map_location="cpu")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read variant weights ({_first_line(e)})") from None


def _table(name: str, info: dict[str, Any], weights: dict[str, torch.Tensor]) -> PackedTable:
    return PackedTable(
        module=info["module"], name=name, feature_names=tuple(info["feature_names"]), pooling=info["pooling"],
        num_embeddings=info["num_embeddings"], dim=info["dim"], precision=info["precision"],
        weight=weights[f"table.{name}.weight"], scale_bias=weights.get(f"table.{name}.scale_bias"),
        remap=weights.get(f"table.{name}.remap"))


def load_variant(folder: Path | str, device: torch.device = CPU) -> CompressedScorer:
    """A variant folder as a Scorer; CheckpointError (one line) if anything is missing or corrupt."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    weights = _load_weights(folder, manifest)
    try:
        schema = schema_from_dict(manifest["schema"])
        model = build_model(manifest["kind"], schema, manifest["model_config"], torch.device("cpu"))
        dense = {k.removeprefix("dense."): v for k, v in weights.items() if k.startswith("dense.")}
        missing, unexpected = model.load_state_dict(dense, strict=False)
        if unexpected or any(".embedding_bags." not in k for k in missing):
            raise CheckpointError(f"{folder / WEIGHTS}: dense layers do not match the manifest's model")
        tables = {n: _table(n, info, weights) for n, info in manifest["tables"].items()}
        return CompressedScorer(manifest["kind"], model, tables, manifest["size"]["fp32_total"], device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{folder}: variant does not match its manifest ({_first_line(e)})") from None
