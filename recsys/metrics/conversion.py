"""Metrics of a click-and-conversion model: each head judged on the rows its label is defined on.

Labels are [N, 2] (clicks, clicked-and-converted; padding rows -1), logits [N, 2] (the click head's
and the conversion head's, of P(conversion | click)). The click head gets the CTR metrics on every
row (`auc`, `ne`, ... as `ctr_metrics`); the conversion head gets them on the clicked rows, where a
conversion can happen (`conversion_auc`, `conversion_ne`, ...; `conversion_ctr` is the conversion
rate of clicks); `ctcvr_auc` ranks all rows by P(click) * P(conversion | click) against
clicked-and-converted, the ESMM paper's CTCVR AUC.
"""
from __future__ import annotations

import numpy as np

from recsys.metrics.ctr import auc, ctr_metrics


def conversion_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Both heads' metrics as one flat dict (see the module docstring). ValueError if the labels
    or logits are not [N, 2], or a head's rows hold one class."""
    y, z = np.asarray(labels, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != 2 or z.shape != y.shape:
        raise ValueError(f"labels and logits must both be [N, 2], got {y.shape} and {z.shape}")
    out: dict[str, float] = dict(ctr_metrics(y[:, 0], z[:, 0], from_logits=True).to_dict())
    clicked = y[:, 0] == 1
    head = ctr_metrics(y[clicked, 1], z[clicked, 1], from_logits=True).to_dict()
    out.update({f"conversion_{k}": v for k, v in head.items()})
    real = y[:, 0] >= 0
    log_ctcvr = -np.logaddexp(0.0, -z[real, 0]) - np.logaddexp(0.0, -z[real, 1])  # no ties where sigmoids saturate
    out["ctcvr_auc"] = auc(y[real, 1], log_ctcvr)
    return out
