"""Compress a finished run's model into the variants its `[compress]` section lists.

Reads the teacher the run exported (runs/<name>/<teacher>/model), checks it was trained on this
config's data and model settings, builds every variant (fp32 TBE baseline first) and writes
runs/<name>/variants/<variant>/ plus variants.csv and variants.png (AUC or recall vs bytes and
vs p99 latency, Pareto front marked).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from recsys.app.config import ExperimentConfig
from recsys.app.lineage import check_trained
from recsys.data.dataset import ClickDataset
from recsys.errors import ConfigError, UserError

SUMMARY_CSV, SUMMARY_PNG = "variants.csv", "variants.png"


def compress_run(config: ExperimentConfig, dataset: ClickDataset | None = None,
                 progress: bool = True) -> list[dict[str, Any]]:
    """Build, measure and store every configured variant; returns the summary rows as dicts."""
    import torch

    from compression.build import compress
    from recsys.data.sources import load_dataset
    from recsys.serving.export import load_model

    if config.compress is None:
        raise ConfigError("compress: the config has no [compress] section")
    if config.compress.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("compress.device: 'cuda' asked for, but torch sees no CUDA device here")
    folder = config.run_dir / config.compress.teacher / "model"
    if not folder.is_dir():
        raise UserError(f"{folder}: no exported {config.compress.teacher} model; run `recsys run` first")
    exported = load_model(folder)
    teacher = config.compress.teacher
    check_trained(config, exported.meta.get("experiment", {}), folder, ("seed", "data", f"{teacher}.model"))
    dataset = dataset if dataset is not None else load_dataset(config.data, config.seed)
    compress(exported, dataset, config.compress, config.run_dir, torch.device(config.compress.device), progress)
    rows = write_summary(config.run_dir, f"{config.name}: {config.compress.teacher} variants")
    return [asdict(r) for r in rows]


def write_summary(run_dir: Path, title: str, batch_size: int | None = None) -> list:
    """variants.csv and variants.png over every variant stored in the run; returns the rows."""
    from compression.report import plot, run_rows, write_csv

    rows = run_rows(run_dir, batch_size)
    if rows:
        write_csv(rows, run_dir / "variants" / SUMMARY_CSV)
        plot(rows, run_dir / "variants" / SUMMARY_PNG, title)
    return rows


def variant_folders(config: ExperimentConfig) -> list[Path]:
    """The folders of the variants this config lists (the fp32 baseline excluded), stored or not."""
    if config.compress is None:
        return []
    return [config.run_dir / "variants" / v.name for v in config.compress.variants]
