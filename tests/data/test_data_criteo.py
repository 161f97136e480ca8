"""Criteo TSV: values parsed and hashed exactly as an independent implementation, splits, errors."""
import gzip
import random

import numpy as np
import pytest

from recsys.data.config import CriteoConfig, DataConfig
from recsys.data.criteo import CriteoDataset
from recsys.errors import DataError

M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def reference_hash(value: bytes, feature: int, size: int) -> int:
    """The documented hash, one Python int at a time."""
    padded = (value + b"\0" * (-len(value) % 8)) or b"\0" * 8
    words = [int.from_bytes(padded[i:i + 8], "little") for i in range(0, len(padded), 8)]
    h = _mix(words[0] ^ _mix(feature + 1) ^ ((len(value) * 0x9E3779B97F4A7C15) & M64))
    for w in words[1:]:
        h = _mix(h ^ w)
    return h % size


def _lines(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ints = [str(rng.randint(-3, 10**rng.randint(0, 12))) if rng.random() > 0.2 else "" for _ in range(13)]
        cats = [format(rng.getrandbits(32), "08x") if rng.random() > 0.1 else "" for _ in range(25)]
        out.append([str(rng.randint(0, 1))] + ints + cats + ["a-much-longer-value-" * rng.randint(0, 2)])
    return out


def _dataset(tmp_path, rows, **criteo):
    path = tmp_path / "day.tsv"
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    sizes = criteo.pop("num_embeddings", (1000,))
    cfg = DataConfig(source="criteo", criteo=CriteoConfig(train_paths=(str(path),),
                                                          num_embeddings=sizes, chunk_rows=97, **criteo))
    return CriteoDataset(cfg, seed=0), path


def test_rows_match_an_independent_parse(tmp_path):
    rows = _lines(500)
    ds, _ = _dataset(tmp_path, rows, num_embeddings=tuple(range(100, 126)))
    batch = next(_all_train(ds, 500))  # every line, in file order
    expected_dense = [[np.log1p(max(int(v), 0)) if v else 0.0 for v in r[1:14]] for r in rows]
    assert np.allclose(batch.dense_features.numpy(), expected_dense, rtol=1e-6)
    assert batch.labels.tolist() == [float(r[0]) for r in rows]
    kjt = batch.sparse_features
    for j, key in enumerate(kjt.keys()):
        expected = [reference_hash(r[14 + j].encode(), j, 100 + j) for r in rows]
        assert kjt[key].values().tolist() == expected, key


def test_hash_splits_partition_lines_and_num_rows_is_exact(tmp_path):
    ds, _ = _dataset(tmp_path, _lines(1000))
    counts = {s: ds.num_rows(s) for s in ("train", "val", "test")}
    assert sum(counts.values()) == 1000 and all(counts.values())
    seen = []
    for split in counts:
        real = [b.dense_features.numpy()[b.labels.numpy() != -1] for b in ds.batches(split, 64)]
        assert sum(len(r) for r in real) == counts[split]
        seen += [tuple(row) for r in real for row in r.round(4)]
    everything = [tuple(row) for row in next(_all_train(ds, 1000)).dense_features.numpy().round(4)]
    assert sorted(seen) == sorted(everything)
    assert abs(counts["test"] - 250) < 60


def _all_train(ds, n):
    ds._carved = ["train"]  # read every line into train
    return ds.batches("train", n)


def test_own_split_files_and_gzip(tmp_path):
    rows = _lines(50)
    test = tmp_path / "test.tsv.gz"
    with gzip.open(test, "wt") as f:
        f.write("".join("\t".join(r) + "\n" for r in rows[:20]))
    ds, _ = _dataset(tmp_path, rows, test_paths=(str(test),))
    assert ds.num_rows("test") == 20 and ds.num_rows("train") + ds.num_rows("val") == 50


@pytest.mark.parametrize("edit,message", [
    (lambda r: r[:-1], "day.tsv:4: expected 40 tab-separated columns, got 39"),
    (lambda r: ["2"] + r[1:], "day.tsv:4: label '2' is not 0 or 1"),
    (lambda r: r[:3] + ["nan"] + r[4:], "day.tsv:4: I3 'nan' is not an integer"),
    (lambda r: r[:1] + ["1.5"] + r[2:], "day.tsv:4: I1 '1.5' is not an integer"),
])
def test_bad_lines_name_file_and_line(tmp_path, edit, message):
    rows = _lines(200)
    rows[3] = edit(rows[3])
    ds, _ = _dataset(tmp_path, rows)
    with pytest.raises(DataError, match=message):
        list(ds.batches("train", 64))


def test_missing_file_empty_split_and_no_retrieval(tmp_path):
    with pytest.raises(DataError, match=r"data.criteo.train_paths\[0\]: no such file"):
        CriteoDataset(DataConfig(source="criteo", criteo=CriteoConfig(train_paths=("nope.tsv",))), 0)
    ds, _ = _dataset(tmp_path, [])
    with pytest.raises(DataError, match="train split is empty"):
        list(ds.batches("train", 8))
    with pytest.raises(DataError, match="no users and items"):
        ds.retrieval("test")
    with pytest.raises(DataError, match="no item popularity"):
        ds.item_popularity()


def _gz_dataset(tmp_path, data: bytes) -> CriteoDataset:
    path = tmp_path / "day.tsv.gz"
    path.write_bytes(data)
    return CriteoDataset(DataConfig(source="criteo", criteo=CriteoConfig(train_paths=(str(path),), chunk_rows=97)), 0)


def test_a_truncated_gzip_file_is_named_with_the_line_reached(tmp_path):
    rows = _lines(3000)
    whole = gzip.compress("".join("\t".join(r) + "\n" for r in rows).encode())
    ds = _gz_dataset(tmp_path, whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"day.tsv.gz: truncated or corrupt gzip file"):
        ds.num_rows("train")
    with pytest.raises(DataError, match=r"day.tsv.gz:\d+: truncated or corrupt gzip file") as info:
        list(ds.batches("train", 64))
    line = int(str(info.value).split(":")[1])
    assert 1 < line <= 3000 and (line - 1) % 97 == 0  # the first line of the chunk that could not be read


def test_a_corrupt_gzip_file_is_one_error(tmp_path):
    """A wrong CRC (its trailer's first byte flipped): every line decodes, the check at the end fails."""
    whole = bytearray(gzip.compress("".join("\t".join(r) + "\n" for r in _lines(3000)).encode()))
    whole[-8] ^= 0xFF
    with pytest.raises(DataError, match=r"day.tsv.gz:\d+: truncated or corrupt gzip file \(CRC check failed"):
        list(_gz_dataset(tmp_path, bytes(whole)).batches("train", 64))


def test_a_gz_name_on_plain_text_is_refused_before_reading(tmp_path):
    path = tmp_path / "day.tsv.gz"
    path.write_text("".join("\t".join(r) + "\n" for r in _lines(10)))
    with pytest.raises(DataError, match=r"data.criteo.train_paths\[0\]: .*day.tsv.gz is not a gzip file"):
        CriteoDataset(DataConfig(source="criteo", criteo=CriteoConfig(train_paths=(str(path),))), 0)
