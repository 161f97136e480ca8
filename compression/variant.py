"""Variants and the variant store: one folder per variant with manifest.json and weights.pt.

weights.pt is a plain dict of uint8/int32/float tensors (packed rows, fp16 scale|bias as bytes,
remaps, factorized tables' maps, dense layers), so `torch.load(weights_only=True)` reads it without running pickled code
(UInt4Tensor would be refused). The manifest records the recipe, exact bytes per table, metrics,
latency and provenance, plus the weights' sha256. Reading a folder checks the manifest key by key
(`SUMMARY_KEYS` to list the variant; `LOAD_KEYS` and `TABLE_KEYS` too, to load it) and the weights
against their checksum before loading them: a corrupt, truncated or modified folder is one
CheckpointError line naming the file and what is wrong. A set of variants is written under a
temporary name and renamed when complete.

A recsys model is rebuilt from the manifest (its `ModelSpec`); a model of your own is loaded into
a model of the same architecture that you pass (`load_variant(folder, model=...)`).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from compression.scorer import CPU, CompressedScorer
from compression.tables import PackedTable, embedding_prefixes, size_report
from recsys import integrity
from recsys.atomic import staged_folder
from recsys.data.schema import Schema
from recsys.errors import CheckpointError
from recsys.integrity import first_line, load_tensors, sha256, verify
from recsys.models.registry import build_model, schema_from_dict, schema_to_dict
from recsys.provenance import provenance
from recsys.serving.scorer import ScoreFn, call_score
from recsys.serving.size import SizeReport

FORMAT = 1
MANIFEST, WEIGHTS = "manifest.json", "weights.pt"
NONE = type(None)
Keys = dict[str, type | tuple[type, ...]]
SUMMARY_KEYS: Keys = {"name": str, "size": dict, "metrics": dict, "latency": dict}  # what lists a variant
SIZE_KEYS: Keys = {"total": int, "ratio_vs_fp32": (int, float)}
LOAD_KEYS: Keys = {"kind": (str, NONE), "schema": (dict, NONE), "model_config": (dict, NONE), "tables": dict,
                   "weights_sha256": str}  # and what loads it
TABLE_KEYS: Keys = {"module": str, "feature_names": list, "pooling": str, "num_embeddings": int, "dim": int,
                    "precision": str, "rows": int, "pruned": bool}
OPTIONAL_TABLE_KEYS: Keys = {"map_dim": int}  # a factorized table's output width (0 or absent: not factorized)


@dataclass(frozen=True)
class ModelSpec:
    """A recsys model the store can rebuild: its kind, schema and model config."""

    kind: str
    schema: Schema
    config: dict[str, Any]

    def build(self) -> nn.Module:
        """A freshly initialised model of this spec, on CPU."""
        return build_model(self.kind, self.schema, self.config, CPU)

    def with_overrides(self, options: dict[str, Any]) -> ModelSpec:
        """The same model with some config options changed (a distilled student's)."""
        return replace(self, config={**self.config, **options})


@dataclass
class Variant:
    """A compressed model before measurement: dense layers of `model` plus packed tables."""

    name: str
    spec: ModelSpec | None  # None: a model of your own
    model: nn.Module  # its float EBC weights are ignored; the packed tables replace them
    tables: dict[str, PackedTable]
    fp32_total: int  # bytes of the teacher's fp32 TBE: the reference of every ratio
    recipe: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. chosen precisions, student-alone metrics
    teacher: dict[str, Any] = field(default_factory=dict)  # the teacher's provenance: run config, test metrics

    def scorer(self, device: torch.device = CPU, score: ScoreFn = call_score,
               catalogue: KeyedJaggedTensor | None = None) -> CompressedScorer:
        """The variant served on `device`; `catalogue`: a two-tower's items, embedded once."""
        return CompressedScorer(self.model, self.tables, self.fp32_total, device, score, catalogue)


@dataclass
class MeasuredVariant:
    """A variant with its measurements: metrics (with `delta_<metric>` against the fp32 baseline)
    and latency per batch size, both taken on `device`."""

    variant: Variant
    metrics: dict[str, float]
    latency: dict[str, dict[str, Any]]
    device: torch.device = CPU

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def size(self) -> SizeReport:
        """Bytes per table and in total, by the one byte counter."""
        return size_report(self.variant.tables.values(), self.variant.fp32_total)

    def manifest(self) -> dict[str, Any]:
        """What manifest.json holds (the store adds the weights' checksum)."""
        v, spec = self.variant, self.variant.spec
        return {
            "format": FORMAT, "name": v.name, "kind": spec.kind if spec else None,
            "schema": schema_to_dict(spec.schema) if spec else None, "model_config": spec.config if spec else None,
            "recipe": v.recipe, "notes": v.notes, "teacher": v.teacher,
            "tables": {n: _table_info(t) for n, t in v.tables.items()},
            "size": self.size.to_dict(), "metrics": self.metrics, "latency": self.latency,
            "provenance": provenance(self.device),
        }


def _table_info(t: PackedTable) -> dict[str, Any]:
    return {"module": t.module, "feature_names": list(t.feature_names), "pooling": t.pooling,
            "num_embeddings": t.num_embeddings, "dim": t.dim, "precision": t.precision, "rows": t.rows,
            "pruned": t.remap is not None, "map_dim": t.projection.shape[1] if t.projection is not None else 0}


def _dense_state(model: nn.Module) -> dict[str, torch.Tensor]:
    prefixes = embedding_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}


def _weights(variant: Variant) -> dict[str, torch.Tensor]:
    out = {f"dense.{k}": v.detach().cpu().contiguous() for k, v in _dense_state(variant.model).items()}
    for name, t in variant.tables.items():
        out[f"table.{name}.weight"] = t.weight.contiguous()
        if t.scale_bias is not None:
            out[f"table.{name}.scale_bias"] = t.scale_bias.contiguous()
        if t.remap is not None:
            out[f"table.{name}.remap"] = t.remap.contiguous()
        if t.projection is not None:
            out[f"table.{name}.projection"] = t.projection.detach().float().contiguous()
    return out


def save_variants(folder: Path | str, measured: Sequence[MeasuredVariant]) -> list[dict[str, Any]]:
    """Replace `folder` as a whole, atomically (temporary folder, then rename), by one subfolder per
    variant; returns the manifests. The folder always holds one consistent set."""
    with staged_folder(Path(folder)) as tmp:
        return [_write(tmp / m.name, m) for m in measured]


def _write(folder: Path, measured: MeasuredVariant) -> dict[str, Any]:
    folder.mkdir()
    torch.save(_weights(measured.variant), folder / WEIGHTS)
    manifest = measured.manifest() | {"weights_sha256": sha256(folder / WEIGHTS)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The manifest of a variant folder; CheckpointError (naming the file and the key) if it is
    missing, not JSON, or a key that lists the variant (name, size, metrics, latency) is missing
    or of the wrong type."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable variant manifest ({first_line(e)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a variant manifest of format {FORMAT}")
    _check(manifest, SUMMARY_KEYS, path, "")
    _check(manifest["size"], SIZE_KEYS, path, "size.")
    return manifest


def _check_loadable(manifest: dict[str, Any], path: Path) -> None:
    """The keys `load_variant` reads are there, with their types."""
    _check(manifest, LOAD_KEYS, path, "")
    integrity.field(manifest["size"], "fp32_total", int, path, "size.fp32_total")
    for name in manifest["tables"]:
        integrity.field(manifest["tables"], name, dict, path, f"tables.{name}")
        info = manifest["tables"][name]
        _check(info, TABLE_KEYS, path, f"tables.{name}.")
        _check(info, {k: v for k, v in OPTIONAL_TABLE_KEYS.items() if k in info}, path, f"tables.{name}.")


def _check(record: dict[str, Any], keys: Keys, path: Path, prefix: str) -> None:
    """Each of `keys` is in `record` with its type (named `prefix` + key in the error)."""
    for key, kind in keys.items():
        integrity.field(record, key, kind, path, prefix + key)


def _load_weights(folder: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS
    verify(path, manifest["weights_sha256"])
    return load_tensors(path)


def _table(name: str, info: dict[str, Any], weights: dict[str, torch.Tensor]) -> PackedTable:
    projection = weights.get(f"table.{name}.projection")
    shape = tuple(projection.shape) if projection is not None else None
    map_dim = info.get("map_dim", 0)
    if shape != ((info["dim"], map_dim) if map_dim else None):
        raise ValueError(f"table {name}: map of shape {shape} for a manifest map_dim of {map_dim}")
    return PackedTable(
        module=info["module"], name=name, feature_names=tuple(info["feature_names"]), pooling=info["pooling"],
        num_embeddings=info["num_embeddings"], dim=info["dim"], precision=info["precision"],
        weight=weights[f"table.{name}.weight"], scale_bias=weights.get(f"table.{name}.scale_bias"),
        remap=weights.get(f"table.{name}.remap"), projection=projection)


def _model(folder: Path, manifest: dict[str, Any], model: nn.Module | None) -> nn.Module:
    """The float model the variant's dense weights go into: the one passed, or the manifest's recsys model."""
    if model is not None:
        return copy.deepcopy(model)
    if manifest.get("kind") is None:
        raise CheckpointError(f"{folder}: variant of a model of your own; pass a model of its architecture")
    return ModelSpec(manifest["kind"], schema_from_dict(manifest["schema"]), manifest["model_config"]).build()


def load_variant(folder: Path | str, device: torch.device = CPU, model: nn.Module | None = None,
                 score: ScoreFn = call_score) -> CompressedScorer:
    """A variant folder as a Scorer; CheckpointError (one line) if anything is missing or corrupt.
    `model`: for a variant of a model of your own, a model of the same architecture (not modified);
    `score`: how that model scores a batch."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    _check_loadable(manifest, folder / MANIFEST)
    weights = _load_weights(folder, manifest)
    try:
        target = _model(folder, manifest, model)
        dense = {k.removeprefix("dense."): v for k, v in weights.items() if k.startswith("dense.")}
        missing, unexpected = target.load_state_dict(dense, strict=False)
        prefixes = embedding_prefixes(target)
        if unexpected or not all(k.startswith(prefixes) for k in missing):
            raise CheckpointError(f"{folder / WEIGHTS}: dense layers do not match the manifest's model")
        tables = {n: _table(n, info, weights) for n, info in manifest["tables"].items()}
        return CompressedScorer(target, tables, manifest["size"]["fp32_total"], device, score)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{folder}: variant does not match its manifest ({first_line(e)})") from None
