"""Criteo-format TSV logs drawn from a known click model: Criteo's shape where Criteo cannot be
downloaded.

Criteo Kaggle's 26 categorical features (cardinalities capped at `max_cardinality`, Zipf-skewed
values, missing values) and 13 count features, written as Criteo TSV and read back by the Criteo
reader like the real files. The click logit is
    intercept + sum_k EFFECT_STD[k] * z_k[value_k] + sum over INTERACTIONS of <u_a[value_a], v_b[value_b]>
              + DENSE_WEIGHTS @ standardized log(1 + count),
so feature importance is known and very uneven (some large tables are pure noise, some carry
the interactions), as in real ads logs: what per-table compression decisions need. The true
click probability is known, so `truth.json` holds the best achievable AUC and log loss.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from recsys.atomic import staged_folder, write_text
from recsys.data.config import CriteoLikeConfig, DataConfig
from recsys.data.criteo import NUM_DENSE, NUM_SPARSE, SPARSE, mix64
from recsys.logit import intercept_for_rate, sigmoid
from recsys.metrics.ctr import ctr_metrics
from recsys.progress import bar

KAGGLE_CARDINALITY = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
                      27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
EFFECT_STD = (0.3, 0.2, 0.0, 0.6, 0.3, 0.2, 0.1, 0.1, 0.1, 0.5, 0.2, 0.0, 0.1,
              0.2, 0.05, 0.0, 0.1, 0.1, 0.05, 0.1, 0.05, 0.0, 0.2, 0.4, 0.1, 0.4)
MISSING_RATE = (0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0,
                0.0, 0.0, 0.03, 0.0, 0.0, 0.44, 0.44, 0.03, 0.0, 0.76, 0.0, 0.44, 0.44)
INTERACTIONS = ((3, 25), (9, 23))  # (C4, C26) and (C10, C24): low-rank dot products in the logit
DENSE_MEAN = (3.5, 105.0, 26.0, 7.3, 18500.0, 116.0, 16.3, 12.5, 106.0, 0.6, 2.7, 1.0, 8.2)
DENSE_WEIGHTS = (0.2, 0.0, -0.1, 0.0, 0.0, 0.15, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, -0.1)
DENSE_MISSING = 0.2


def cardinalities(config: CriteoLikeConfig) -> tuple[int, ...]:
    """Criteo Kaggle's cardinality of each categorical feature, capped at max_cardinality."""
    return tuple(min(c, config.max_cardinality) for c in KAGGLE_CARDINALITY)


class CriteoLikeTruth:
    """The log's truth: value frequencies, per-value effects and interaction vectors of each feature."""

    def __init__(self, config: CriteoLikeConfig, seed: int):
        rng = np.random.default_rng([seed, 0])
        self.config, cards = config, cardinalities(config)
        self.cumulative = [np.cumsum(p) / p.sum() for p in
                           (np.arange(1, c + 1, dtype=np.float64) ** -config.zipf for c in cards)]
        self.effects = [s * rng.standard_normal(c) for s, c in zip(EFFECT_STD, cards)]
        scale = (config.interaction_std / np.sqrt(config.interaction_dim)) ** 0.5
        self.latent = {k: scale * rng.standard_normal((cards[k], config.interaction_dim))
                       for pair in INTERACTIONS for k in pair}
        self.intercept = 0.0
        counts, ranks, _ = self.sample(np.random.default_rng([seed, 1]), min(config.num_rows, 200_000))
        self.intercept = intercept_for_rate(self.logit(counts, ranks), config.base_ctr)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n rows: counts int64 [n, 13] (-1 missing), value ranks int64 [n, 26] (-1 missing), true P(click)."""
        ranks = np.stack([np.searchsorted(cum, rng.random(n)) for cum in self.cumulative], axis=1)
        ranks[rng.random((n, NUM_SPARSE)) < np.array(MISSING_RATE)] = -1
        counts = rng.poisson(np.array(DENSE_MEAN) * rng.lognormal(0.0, 1.0, (n, NUM_DENSE)))
        counts[rng.random((n, NUM_DENSE)) < DENSE_MISSING] = -1
        return counts, ranks, sigmoid(self.logit(counts, ranks))

    def logit(self, counts: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """The click logit of rows of counts [n, 13] and value ranks [n, 26] (-1 missing)."""
        logit = np.full(len(ranks), self.intercept)
        for k, effect in enumerate(self.effects):
            logit += np.where(ranks[:, k] >= 0, effect[ranks[:, k]], 0.0)
        for a, b in INTERACTIONS:
            present = (ranks[:, a] >= 0) & (ranks[:, b] >= 0)
            dot = np.einsum("nd,nd->n", self.latent[a][ranks[:, a]], self.latent[b][ranks[:, b]])
            logit += np.where(present, dot, 0.0)
        x = np.log1p(np.maximum(counts, 0))
        return logit + ((x - np.log1p(np.array(DENSE_MEAN))) / 1.5) @ np.array(DENSE_WEIGHTS)


def _decimal(x: np.ndarray, width: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """ASCII digits of non-negative ints, left-aligned in [n, width] bytes, and their lengths."""
    digits = np.maximum(np.floor(np.log10(np.maximum(x, 1))).astype(np.int64) + 1, 1)
    pos = np.arange(width)
    power = 10 ** np.clip(digits[:, None] - 1 - pos, 0, None)
    return (48 + (x[:, None] // power) % 10).astype(np.uint8), digits


def _hex(values: np.ndarray) -> np.ndarray:
    """Eight lowercase hex digits of each uint32 value, [n, 8] bytes."""
    nibbles = (values[:, None] >> np.arange(28, -4, -4, dtype=np.uint64)) & np.uint64(15)
    return np.frombuffer(b"0123456789abcdef", np.uint8)[nibbles.astype(np.int64)]


def format_tsv(labels: np.ndarray, counts: np.ndarray, ranks: np.ndarray) -> bytes:
    """Criteo TSV lines: label, 13 counts (empty if -1), 26 categorical values (8 hex digits of a
    salted hash of the value's rank; empty if -1)."""
    n = len(labels)
    columns = [((48 + labels.astype(np.uint8))[:, None], np.ones(n, np.int64))]
    for j in range(NUM_DENSE):
        text, length = _decimal(np.maximum(counts[:, j], 0))
        columns.append((text, np.where(counts[:, j] >= 0, length, 0)))
    for k in range(NUM_SPARSE):
        salt = np.uint64(int(mix64(np.uint64(k + 101))))
        value = mix64(ranks[:, k].astype(np.uint64) ^ salt) & np.uint64(0xFFFFFFFF)
        columns.append((_hex(value), np.where(ranks[:, k] >= 0, 8, 0)))
    width = sum(text.shape[1] + 1 for text, _ in columns)
    out, keep, at = np.empty((n, width), np.uint8), np.zeros((n, width), bool), 0
    for i, (text, length) in enumerate(columns):
        w = text.shape[1]
        out[:, at:at + w], keep[:, at:at + w] = text, np.arange(w) < length[:, None]
        out[:, at + w], keep[:, at + w] = (10 if i == len(columns) - 1 else 9), True
        at += w + 1
    return out[keep].tobytes()


def folder_for(config: CriteoLikeConfig, seed: int, cache_dir: Path | str) -> Path:
    """The cache folder of this (config, seed): a name keyed on both, so a change regenerates."""
    key = hashlib.sha256(json.dumps([asdict(config), seed], sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"criteo_like-{key}"


def ensure(config: CriteoLikeConfig, seed: int, cache_dir: Path | str) -> Path:
    """The folder holding log.tsv and truth.json for (config, seed), generated on first use
    (written to a temporary folder, then renamed: never half-written)."""
    folder = folder_for(config, seed, cache_dir)
    if (folder / "truth.json").is_file():
        return folder
    model = CriteoLikeTruth(config, seed)
    labels_all, probs_all = [], []
    with staged_folder(folder) as tmp:
        with open(tmp / "log.tsv", "wb") as f, bar(config.num_rows, "criteo_like rows", unit="row") as progress:
            for start in range(0, config.num_rows, config.chunk_rows):
                rng = np.random.default_rng([seed, 2, start // config.chunk_rows])
                counts, ranks, p = model.sample(rng, min(config.chunk_rows, config.num_rows - start))
                labels = (rng.random(len(p)) < p).astype(np.int64)
                f.write(format_tsv(labels, counts, ranks))
                labels_all.append(labels)
                probs_all.append(p)
                progress.update(len(p))
        write_text(tmp / "truth.json", json.dumps(_truth(config, seed, model, np.concatenate(labels_all),
                                                         np.concatenate(probs_all)), indent=2))
    return folder


def _truth(config: CriteoLikeConfig, seed: int, model: CriteoLikeTruth, labels: np.ndarray, p: np.ndarray) -> dict:
    best = ctr_metrics(labels, p, from_logits=False)
    return {"config": asdict(config), "seed": seed, "intercept": model.intercept, "ctr": float(labels.mean()),
            "true_probability_metrics": {"auc": best.auc, "log_loss": best.log_loss, "ne": best.ne},
            "features": {name: {"cardinality": c, "effect_std": s, "missing_rate": m}
                         for name, c, s, m in zip(SPARSE, cardinalities(config), EFFECT_STD, MISSING_RATE)},
            "interactions": [[SPARSE[a], SPARSE[b]] for a, b in INTERACTIONS]}


def generated_criteo(config: DataConfig, seed: int) -> DataConfig:
    """`config` as a Criteo source reading the generated log of `config.criteo_like` (made on first use)."""
    log = ensure(config.criteo_like, seed, config.cache_dir) / "log.tsv"
    return replace(config, source="criteo", criteo=replace(config.criteo, train_paths=(str(log),)))
