"""planned_schema: the schema a config's dataset will have, known before any data is read, equals
the loaded dataset's (names, sides, multi-hot widths, and sizes where the config sets them)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from recsys.data.config import CriteoConfig, DataConfig
from recsys.data.sources import check_files, load_dataset, planned_schema
from recsys.errors import DataError
from tests.data.data_helpers import small_config

LINE = "\t".join(["1"] + ["3"] * 13 + ["a1b2c3d4"] * 26) + "\n"


def _names(schema) -> list[tuple]:
    return [(f.name, f.side) for f in schema.sparse]


def test_a_generated_world(tmp_path: Path) -> None:
    config = small_config(num_users=123, num_items=45, num_segments=3, max_user_tags=2)
    assert planned_schema(config) == load_dataset(config, seed=1).schema


@pytest.mark.parametrize("sizes", [(77,), tuple(range(10, 36))])
def test_criteo(tmp_path: Path, sizes: tuple[int, ...]) -> None:
    path = tmp_path / "day.tsv"
    path.write_text(LINE * 20)
    config = DataConfig(source="criteo", criteo=CriteoConfig(train_paths=(str(path),), num_embeddings=sizes))
    assert planned_schema(config) == load_dataset(config, seed=0).schema
    like = DataConfig(source="criteo_like", criteo=CriteoConfig(num_embeddings=sizes))
    assert planned_schema(like) == planned_schema(config)


@pytest.mark.network
def test_movielens_100k() -> None:
    config = DataConfig(source="movielens")
    assert planned_schema(config) == load_dataset(config, seed=0).schema


@pytest.mark.network
def test_the_movielens_fitted_world() -> None:
    from recsys.data.synthetic import world_for

    config = small_config(truth="movielens")
    planned, world = planned_schema(config), world_for(config, 0).schema()
    assert _names(planned) == _names(world) and planned.dense == world.dense  # its tag widths are the fit's
    assert [f.num_embeddings for f in planned.sparse if f.name in ("user_id", "item_id")] == \
        [f.num_embeddings for f in world.sparse if f.name in ("user_id", "item_id")]


def test_check_files_names_the_key(tmp_path: Path) -> None:
    present = tmp_path / "day.tsv"
    present.write_text(LINE)
    criteo = DataConfig(source="criteo", criteo=CriteoConfig(train_paths=(str(present),),
                                                             val_paths=(str(tmp_path / "val.tsv"),)))
    with pytest.raises(DataError, match=r"^data.criteo.val_paths\[0\]: no such file"):
        check_files(criteo)
    check_files(replace(criteo, criteo=replace(criteo.criteo, val_paths=())))
    for source in ("movielens", "synthetic"):
        missing = replace(small_config(truth="movielens"), source=source)
        missing = replace(missing, movielens=replace(missing.movielens, path=str(tmp_path / "ml")))
        with pytest.raises(DataError, match="^data.movielens.path: no such folder"):
            check_files(missing)
    check_files(small_config())  # a generated world has no files
