"""MovieLens-100k: known statistics, GroupLens files equal RecBole files, bad files."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from recsys.data.config import DataConfig, MovieLensConfig
from recsys.data.movielens import GENRES, fetch, load_movielens, read_folder
from recsys.errors import DataError

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def recbole() -> Path:
    return fetch(DataConfig(source="movielens"))


def _config(path, **kw) -> DataConfig:
    return DataConfig(source="movielens", movielens=MovieLensConfig(path=str(path), **kw))


def test_statistics(recbole):
    ds = load_movielens(_config(recbole), seed=0)
    total = sum(ds.num_rows(s) for s in ("train", "val", "test"))
    assert total == 100_000 and ds.num_rows("test") == 25_000
    assert ds.schema.feature("user_id").num_embeddings == 943
    assert ds.schema.feature("item_id").num_embeddings == 1682
    labels = np.concatenate([ds.log(s).labels for s in ("train", "val", "test")])
    assert abs(labels.mean() - 0.5537) < 0.001
    dropped = load_movielens(_config(recbole, rating3="drop"), seed=0)
    assert sum(dropped.num_rows(s) for s in ("train", "val", "test")) == 100_000 - 27_145


def _write_grouplens(src: Path, dst: Path) -> None:
    ratings, users, items = read_folder(src)
    dst.mkdir()
    (dst / "u.data").write_text("".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in zip(
        ratings.user, ratings.item, ratings.rating, ratings.timestamp)))
    (dst / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|{z}\n" for u, a, g, o, z in zip(
        users.id, users.age, users.gender, users.occupation, users.zip_code)))
    lines = [f"{i}|Title ({y})|{f'01-Jan-{y}' if y >= 0 else ''}||http://x|"
             + "|".join(str(int(f)) for f in flags) for i, y, flags in zip(items.id, items.year, items.genres)]
    (dst / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))


def test_grouplens_files_give_the_same_rows(recbole, tmp_path):
    _write_grouplens(recbole, tmp_path / "gl")
    a, b = load_movielens(_config(recbole), 7), load_movielens(_config(tmp_path / "gl"), 7)
    assert a.schema == b.schema
    for split in ("train", "test"):
        x, y = next(a.batches(split, 2000, shuffle=True)), next(b.batches(split, 2000, shuffle=True))
        assert x.labels.equal(y.labels) and x.dense_features.equal(y.dense_features)
        assert x.sparse_features.values().equal(y.sparse_features.values())
        assert x.sparse_features.lengths().equal(y.sparse_features.lengths())


def _raw_ids(path: Path) -> np.ndarray:
    """First column (the id) of a RecBole atomic file, in file order: row i of its table."""
    return np.array([line.split("\t")[0] for line in path.read_text().splitlines()[1:]], dtype=np.int64)


def _split_timestamps(ds, folder: Path) -> dict[str, np.ndarray]:
    """Timestamp of each rating of each split, looked up by (user, item) in the raw .inter file."""
    rows = [line.split("\t") for line in (folder / "ml-100k.inter").read_text().splitlines()[1:]]
    when = {(int(u), int(i)): float(t) for u, i, _, t in rows}
    assert len(when) == len(rows) == 100_000  # one rating per (user, item): the lookup is exact
    users, items = _raw_ids(folder / "ml-100k.user"), _raw_ids(folder / "ml-100k.item")
    return {s: np.array([when[int(u), int(i)] for u, i in zip(users[ds.log(s).user], items[ds.log(s).item])])
            for s in ("train", "val", "test")}


def test_temporal_split_puts_latest_ratings_in_test(recbole):
    ds = load_movielens(_config(recbole, split="temporal"), seed=0)
    assert ds.num_rows("test") == 25_000
    ts = _split_timestamps(ds, recbole)
    assert ts["test"].min() >= max(ts["train"].max(), ts["val"].max())
    assert ts["train"].min() < ts["test"].min()  # not vacuous: the test split is not all ties
    rows = ds.retrieval("test")
    assert rows.num_items == 1682 and len(rows.users) > 0


def test_random_split_depends_on_the_seed(recbole):
    a, b = load_movielens(_config(recbole), seed=0), load_movielens(_config(recbole), seed=1)
    assert not np.array_equal(a.log("test").user, b.log("test").user)
    ts = _split_timestamps(a, recbole)
    assert ts["test"].min() < ts["train"].max()  # random, not temporal: the two overlap in time


@pytest.mark.parametrize("file,line,text,message", [
    ("ml-100k.inter", 3, "196\t242\tthree\t881250949", "ml-100k.inter:3: rating 'three' is not a number"),
    ("ml-100k.inter", 2, "196\t242\tnan\t881250949", "ml-100k.inter:2: rating 'nan' is not a finite"),
    ("ml-100k.inter", 4, "196\t242\t3", "ml-100k.inter:4: expected 4"),
    ("ml-100k.inter", 5, "99999\t242\t3\t881250949", "ml-100k.inter:5: user_id 99999 is not in the user file"),
    ("ml-100k.item", 2, "1\tToy Story\t1995\tNoSuchGenre", "ml-100k.item:2: unknown genre 'NoSuchGenre'"),
])
def test_bad_lines_name_file_and_line(recbole, tmp_path, file, line, text, message):
    folder = tmp_path / "ml"
    shutil.copytree(recbole, folder)
    lines = (folder / file).read_text().splitlines()
    lines[line - 1] = text
    (folder / file).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_movielens(_config(folder), 0)


def test_missing_files_and_folders(recbole, tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_movielens(_config(tmp_path / "nope"), 0)
    with pytest.raises(DataError, match="no MovieLens files"):
        load_movielens(_config(tmp_path), 0)
    shutil.copy(recbole / "ml-100k.inter", tmp_path)
    with pytest.raises(DataError, match=r"ml-100k.user: no such file"):
        load_movielens(_config(tmp_path), 0)


def test_genre_vocabulary_covers_recbole_classes(recbole):
    _, _, items = read_folder(recbole)
    assert items.genres.shape == (1682, len(GENRES)) and items.genres.any(axis=1).all()
