"""Click-through-rate metrics: ROC AUC, log loss, normalized entropy and calibration.

Inputs may be numpy arrays, lists or torch tensors (any shape; they are flattened). Labels are
0 or 1; `ctr_metrics` additionally drops padding rows, whose label is negative (the data
pipeline pads with label -1.0).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from recsys.logit import sigmoid


def _array(name: str, x: object) -> np.ndarray:
    """`x` as a flat float64 array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def _checked(labels: object, values: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and `values` as flat float64 arrays after checking length, emptiness and label values."""
    y, v = _array("labels", labels), _array(name, values)
    if y.size != v.size:
        raise ValueError(f"labels and {name} differ in length: {y.size} != {v.size}")
    if y.size == 0:
        raise ValueError("labels are empty")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y, v


def _checked_probs(labels: object, probs: object) -> tuple[np.ndarray, np.ndarray]:
    y, p = _checked(labels, probs, "probs")
    if ((p < 0.0) | (p > 1.0)).any():
        raise ValueError("probs must lie in [0, 1]")
    return y, p


def auc(labels: object, scores: object, weights: object | None = None) -> float:
    """ROC AUC: P(score of a random positive > score of a random negative), ties counting 1/2.

    Exact Mann-Whitney statistic with midranks, O(n log n). With `weights`, every row counts
    as `weight` copies of itself (integer weights equal row repetition). Raises ValueError if
    only one class is present (with positive weight), lengths differ or values are NaN.
    """
    y, s = _checked(labels, scores, "scores")
    w = np.ones_like(y) if weights is None else _array("weights", weights)
    if w.size != y.size:
        raise ValueError(f"labels and weights differ in length: {y.size} != {w.size}")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative")
    return _grouped_auc(y, _score_groups(s), w)


def _score_groups(scores: np.ndarray) -> np.ndarray:
    """Each row's group of equal scores, numbered in ascending score (the one sort AUC needs)."""
    return np.unique(scores, return_inverse=True)[1]


def _grouped_auc(y: np.ndarray, group: np.ndarray, w: np.ndarray) -> float:
    pos = np.bincount(group, weights=w * y)
    neg = np.bincount(group, weights=w * (1.0 - y))
    if pos.sum() <= 0 or neg.sum() <= 0:
        raise ValueError("AUC needs both classes; only one class is present")
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def log_loss(labels: object, probs: object, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy in nats, with probs clipped to [eps, 1 - eps] so it stays finite."""
    y, p = _checked_probs(labels, probs)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


def _base_entropy(y: np.ndarray) -> float:
    """Entropy in nats of always predicting the observed CTR of `y`."""
    ctr = y.mean()
    if ctr in (0.0, 1.0):
        raise ValueError("normalized entropy needs both classes; only one class is present")
    return float(-(ctr * np.log(ctr) + (1.0 - ctr) * np.log1p(-ctr)))


def normalized_entropy(labels: object, probs: object) -> float:
    """Log loss divided by the entropy of the base rate (He et al. 2014); 1.0 = predicting the CTR."""
    y, p = _checked_probs(labels, probs)
    return log_loss(y, p) / _base_entropy(y)


def calibration(labels: object, probs: object) -> float:
    """Mean predicted probability over observed CTR; 1.0 is calibrated, above 1 over-predicts."""
    y, p = _checked_probs(labels, probs)
    if y.sum() == 0:
        raise ValueError("calibration is undefined without positive labels")
    return float(p.mean() / y.mean())


@dataclass(frozen=True)
class CtrMetrics:
    """CTR metrics of one evaluation; `n` counts the rows kept after dropping padding."""

    auc: float
    log_loss: float
    ne: float
    calibration: float
    ctr: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def ctr_metrics(labels: object, logits_or_probs: object, from_logits: bool) -> CtrMetrics:
    """All CTR metrics at once, after dropping padding rows (label < 0, e.g. the pipeline's -1.0).

    `from_logits=True` applies a sigmoid first; AUC uses the raw values, since a saturated sigmoid
    would turn distinct large logits into ties. Raises ValueError if the kept rows hold one class.
    """
    y, v = _array("labels", labels), _array("logits_or_probs", logits_or_probs)
    if y.size != v.size:
        raise ValueError(f"labels and logits_or_probs differ in length: {y.size} != {v.size}")
    keep = y >= 0
    y, v = y[keep], v[keep]
    p = sigmoid(v) if from_logits else v
    return CtrMetrics(
        auc=auc(y, v),
        log_loss=log_loss(y, p),
        ne=normalized_entropy(y, p),
        calibration=calibration(y, p),
        ctr=float(y.mean()),
        n=int(y.size),
    )


@dataclass(frozen=True)
class PairedDifference:
    """AUC(b) - AUC(a) on the same rows, with a paired bootstrap confidence interval."""

    delta: float
    low: float
    high: float
    level: float
    rounds: int


def paired_auc_difference(labels: object, scores_a: object, scores_b: object, rounds: int = 200,
                          level: float = 0.95, seed: int = 0) -> PairedDifference:
    """Whether b ranks better than a on these rows, beyond resampling noise: the same Poisson(1)
    bootstrap weights for both in every round, so the noise the two share cancels."""
    y = _array("labels", labels)
    groups_a = _score_groups(_checked(y, scores_a, "scores")[1])  # one sort per score vector,
    groups_b = _score_groups(_checked(y, scores_b, "scores")[1])  # shared by every round
    point = _grouped_auc(y, groups_b, np.ones_like(y)) - _grouped_auc(y, groups_a, np.ones_like(y))
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(rounds):
        w = rng.poisson(1.0, y.size).astype(np.float64)
        deltas.append(_grouped_auc(y, groups_b, w) - _grouped_auc(y, groups_a, w))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return PairedDifference(point, float(low), float(high), level, rounds)
