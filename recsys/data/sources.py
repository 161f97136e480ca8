"""Pick the dataset named by the config: the one entry point the rest of the framework uses, and
what the config says about it before any of it is read (its features, whether its files are there)."""
from __future__ import annotations

import dataclasses

from recsys.data.config import DataConfig
from recsys.data.dataset import ClickDataset
from recsys.data.schema import Schema


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


def planned_schema(config: DataConfig) -> Schema:
    """The schema load_dataset's dataset will have, from the config alone: feature names and sides
    exactly; table sizes exactly where the config sets them (a generated world, Criteo's
    num_embeddings), MovieLens-100k's where the data does (MovieLens, its fitted world)."""
    from recsys.data.criteo import criteo_schema
    from recsys.data.movielens import ML100K_SIZES
    from recsys.data.movielens import planned_schema as movielens_schema
    from recsys.data.world import world_schema

    if config.source == "movielens":
        return movielens_schema()
    if config.source != "synthetic":
        return criteo_schema(config.criteo)
    world = config.synthetic
    if world.truth == "movielens":
        world = dataclasses.replace(world, num_users=ML100K_SIZES["users"], num_items=ML100K_SIZES["items"])
    return world_schema(world)


def check_files(config: DataConfig) -> None:
    """DataError naming the key of a configured data file or folder that is not there (or a .gz
    file that is not gzip); what is fetched or generated later is not checked."""
    from recsys.data.criteo import check_files as check_criteo
    from recsys.data.movielens import check_path

    if config.source == "criteo":
        check_criteo(config.criteo)
    if config.source == "movielens" or config.source == "synthetic" and config.synthetic.truth == "movielens":
        check_path(config)
