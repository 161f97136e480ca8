"""Pick the dataset named by the config: the one entry point the rest of the framework uses."""
from __future__ import annotations

from recsys.data.config import DataConfig
from recsys.data.dataset import ClickDataset


def load_dataset(config: DataConfig, seed: int) -> ClickDataset:
    """The configured source's dataset, its splits fixed by `seed`."""
    if config.source == "synthetic":
        from recsys.data.synthetic import load_synthetic
        return load_synthetic(config, seed)
    if config.source == "movielens":
        from recsys.data.movielens import load_movielens
        return load_movielens(config, seed)
    from recsys.data.criteo import CriteoDataset
    if config.source == "criteo_like":
        from recsys.data.criteo_like import generated_criteo
        config = generated_criteo(config, seed)
    return CriteoDataset(config, seed)
