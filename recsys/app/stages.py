"""Which stages of a run are already finished for a config, so that `recsys run` resumes an
interrupted run at the stage it was in: training (every model the config trains exported, with
the metrics metrics.json holds for it) and compression (the fp32 baseline and every listed variant
stored, made from that exported teacher and this config's [compress] section)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from recsys.app.config import ExperimentConfig
from recsys.app.lineage import difference
from recsys.config_loading import to_dict
from recsys.errors import CheckpointError
from recsys.serving.export import model_meta

TRAINING_KEYS = ("seed", "data", "train", "dlrm", "two_tower", "baselines")  # what training depends on
TRAINING_RESULTS = ("name", "seed", "config", "provenance", "models")  # metrics.json's keys written by training


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json of a run, or None if there is none readable."""
    stored = _json(run_dir / "metrics.json")
    return stored if isinstance(stored, dict) else None


def finished_training(config: ExperimentConfig, stored: dict[str, Any]) -> dict[str, Any] | None:
    """The training results in `stored` (metrics.json) if they are this config's and every model it
    trains is exported with exactly those test metrics; None if training must run."""
    if difference(config, stored.get("config", {}), TRAINING_KEYS) is not None:
        return None
    models = stored.get("models", {})
    for name in config.trained_models:
        exported = _json(config.run_dir / name / "model" / "model.json")
        if not isinstance(exported, dict) or name not in models or exported.get("test") != models[name].get("test"):
            return None
        if difference(config, exported.get("experiment", {}), TRAINING_KEYS) is not None:
            return None
    return {k: stored[k] for k in TRAINING_RESULTS if k in stored}


def finished_compression(config: ExperimentConfig, stored: dict[str, Any]) -> bool:
    """Whether the stored variants are this config's: metrics.json recorded them under this
    [compress] section, the exported teacher was trained for this config, and each listed variant
    (fp32 first) is stored from that teacher with its recipe and latency batch sizes."""
    from compression.variant import read_manifest

    compress = config.compress
    if compress is None or "variants" not in stored or difference(config, stored.get("config", {}),
                                                                      ("compress",)) is not None:
        return False
    exported = _json(config.run_dir / compress.teacher / "model" / "model.json")
    if not isinstance(exported, dict):
        return False
    teacher = model_meta(exported)
    if difference(config, teacher.get("experiment", {}), TRAINING_KEYS) is not None:
        return False
    recipes = {"fp32": None, **{v.name: to_dict(v) for v in compress.variants}}
    for name, recipe in recipes.items():
        try:
            manifest = read_manifest(config.run_dir / "variants" / name)
        except CheckpointError:
            return False
        if manifest.get("teacher") != teacher or recipe is not None and manifest.get("recipe") != recipe:
            return False
        if sorted(map(int, manifest.get("latency", {}))) != sorted(compress.latency.batch_sizes):
            return False
    return True


def stored_variants(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The summary rows of the stored variants, as compress_run returns them."""
    from compression.report import run_rows

    return [asdict(r) for r in run_rows(config.run_dir)]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
