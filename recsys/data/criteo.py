"""Criteo-format TSV click logs (label, 13 integer, 26 categorical columns), read in chunks.

Parsing is vectorised over the bytes of a chunk of lines. Categorical values are hashed
(splitmix64 rounds over their bytes, 8 at a time, salted with the feature's number, so stable
across processes and Python versions) into that feature's table, so any value, seen or not,
lands in range. Integers become log(1 + max(x, 0)), empty ones 0. Criteo has no users or
items: `retrieval` and `item_popularity` raise DataError.
"""
from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from torchrec.datasets.utils import Batch

from recsys.data.batching import Segment, rank_batches, row_order
from recsys.data.click_log import ClickLog
from recsys.data.config import CriteoConfig, DataConfig
from recsys.data.dataset import RetrievalData, Split
from recsys.data.jagged import Jagged
from recsys.data.schema import Schema, SparseFeature
from recsys.errors import DataError

NUM_DENSE, NUM_SPARSE = 13, 26
NUM_COLUMNS = 1 + NUM_DENSE + NUM_SPARSE
DENSE = tuple(f"I{i}" for i in range(1, NUM_DENSE + 1))
SPARSE = tuple(f"C{i}" for i in range(1, NUM_SPARSE + 1))
_MAX_INT_DIGITS = 18  # longer integers would overflow int64
_ZEROS = np.uint64(0x3030303030303030)  # eight ASCII '0's
GZIP_MAGIC = b"\x1f\x8b"
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


def mix64(x: np.ndarray | np.uint64) -> np.ndarray:
    """splitmix64 finalizer: a bijective scramble of uint64 values, an array or one (a new array)."""
    x = np.array(x, dtype=np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


_SALTS = mix64(np.arange(1, NUM_SPARSE + 1, dtype=np.uint64))


def _words(buf: np.ndarray) -> np.ndarray:
    """words[i] is bytes buf[i:i+8] as a little-endian uint64 (zero-padded): an unaligned view."""
    padded = np.concatenate([buf, np.zeros(8, np.uint8)])
    return np.ndarray(shape=(len(buf),), dtype="<u8", buffer=padded, strides=(1,))


def _block(words: np.ndarray, starts: np.ndarray, length: np.ndarray, b: int) -> np.ndarray:
    """Bytes 8b..8b+7 of each field as a uint64, zero past the field's end."""
    return words[starts + 8 * b] & _LOW_BYTES[np.clip(length - 8 * b, 0, 8)]


def _hash(words: np.ndarray, starts: np.ndarray, length: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """Salted hash of each field's bytes: one splitmix64 round per 8 bytes."""
    h = _block(words, starts, length, 0)
    h ^= salt
    h ^= length.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h = mix64(h)
    for b in range(1, -(-int(length.max(initial=0)) // 8)):
        rows = np.flatnonzero(length > 8 * b)
        h[rows] = mix64(h[rows] ^ _block(words, starts[rows], length[rows], b))
    return h


def _digits(word: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value of the first n (<= 8) ASCII digits of each word, and whether they all are digits.
    SWAR: right-align the digits, pad with '0', then combine pairs, quads and octets."""
    shift = (8 * (8 - n)).astype(np.uint64)
    word = np.where(n > 0, (word << shift) | (_ZEROS & _LOW_BYTES[8 - n]), _ZEROS)
    ok = (((word + np.uint64(0x4646464646464646)) | (word - _ZEROS)) & np.uint64(0x8080808080808080)) == 0
    v = word - _ZEROS
    v = (v * np.uint64(10)) + (v >> np.uint64(8))
    v = (((v & np.uint64(0x000000FF000000FF)) * np.uint64(100 + (1000000 << 32)))
         + (((v >> np.uint64(16)) & np.uint64(0x000000FF000000FF)) * np.uint64(1 + (10000 << 32))))
    return (v >> np.uint64(32)).astype(np.int64), ok


def parse_chunk(data: bytes, path: Path, first_line: int,
                num_embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lines of `data` (ending in a newline) -> labels float32 [n], dense float32 [n, 13], ids [n, 26].
    DataError naming path:line for a wrong column count, a label not 0/1 or a non-integer."""
    buf = np.frombuffer(data, np.uint8)
    seps = np.flatnonzero((buf == 9) | (buf == 10))
    line_ends = np.flatnonzero(buf[seps] == 10)
    counts = np.diff(line_ends, prepend=-1)
    if (counts != NUM_COLUMNS).any():
        bad = int(np.argmax(counts != NUM_COLUMNS))
        raise DataError(f"{path}:{first_line + bad}: expected {NUM_COLUMNS} tab-separated columns, "
                        f"got {counts[bad]}")
    ends = seps.reshape(-1, NUM_COLUMNS)
    starts = np.concatenate([[0], seps[:-1] + 1]).reshape(-1, NUM_COLUMNS)
    ends[:, -1] -= (ends[:, -1] > starts[:, -1]) & (buf[ends[:, -1] - 1] == 13)  # CRLF
    labels = _labels(buf, starts[:, 0], ends[:, 0], path, first_line)
    words = _words(buf)
    ints = _integers(buf, words, starts[:, 1:1 + NUM_DENSE], ends[:, 1:1 + NUM_DENSE], path, first_line)
    dense = np.log1p(np.maximum(ints, 0)).astype(np.float32)
    cat_starts, cat_ends = starts[:, 1 + NUM_DENSE:], ends[:, 1 + NUM_DENSE:]
    salt = np.broadcast_to(_SALTS, cat_starts.shape).ravel()
    hashed = _hash(words, cat_starts.ravel(), (cat_ends - cat_starts).ravel(), salt)
    ids = hashed.reshape(cat_starts.shape) % num_embeddings.astype(np.uint64)
    return labels, dense, ids.astype(np.int64)


def _labels(buf, starts, ends, path, first_line) -> np.ndarray:
    char = buf[starts]
    ok = (ends - starts == 1) & ((char == ord("0")) | (char == ord("1")))
    if not ok.all():
        bad = int(np.argmin(ok))
        value = bytes(buf[starts[bad]:ends[bad]]).decode(errors="replace")
        raise DataError(f"{path}:{first_line + bad}: label {value!r} is not 0 or 1")
    return (char == ord("1")).astype(np.float32)


def _integers(buf, words, starts, ends, path, first_line) -> np.ndarray:
    """Signed decimal integers of the fields [n, k] (empty -> 0)."""
    negative = (buf[np.minimum(starts, len(buf) - 1)] == ord("-")) & (ends > starts)
    first, length = (starts + negative).ravel(), (ends - starts - negative).ravel()
    ok = (length <= _MAX_INT_DIGITS) & ~(negative.ravel() & (length == 0))
    length = np.minimum(length, _MAX_INT_DIGITS)
    value, block_ok = _digits(_block(words, first, length, 0), np.minimum(length, 8))
    ok &= block_ok
    for b in range(1, -(-int(length.max(initial=0)) // 8)):
        rows = np.flatnonzero(length > 8 * b)
        n = np.minimum(length[rows] - 8 * b, 8)
        tail, block_ok = _digits(_block(words, first[rows], length[rows], b), n)
        value[rows] = value[rows] * 10 ** n + tail
        ok[rows] &= block_ok
    if not ok.all():
        row, col = np.unravel_index(np.argmin(ok), starts.shape)
        text = bytes(buf[starts[row, col]:ends[row, col]]).decode(errors="replace")
        raise DataError(f"{path}:{first_line + row}: {DENSE[col]} {text!r} is not an integer")
    value = value.reshape(starts.shape)
    return np.where(negative, -value, value)


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[int, bytes]]:
    """(1-based number of the first line, bytes of up to chunk_rows lines ending in a newline);
    DataError naming the file and line for a truncated or corrupt .gz file."""
    line = 1
    try:
        with _open(path) as f:
            while lines := list(islice(f, chunk_rows)):
                data = b"".join(lines)
                yield line, data if data.endswith(b"\n") else data + b"\n"
                line += len(lines)
    except _GZIP_ERRORS as e:
        raise DataError(f"{path}:{line}: {_gzip_message(e)}") from None


def count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    try:
        with _open(path) as f:
            while block := f.read(1 << 24):
                count += block.count(b"\n")
                last = block[-1:]
    except _GZIP_ERRORS as e:
        raise DataError(f"{path}: {_gzip_message(e)}") from None
    return count + (last != b"\n")


_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)  # a cut or damaged .gz file, found as it is read


def _gzip_message(e: Exception) -> str:
    return f"truncated or corrupt gzip file ({e}); fetch or compress it again"


def line_splits(seed: int, file_index: int, first_line: int, n: int,
                thresholds: np.ndarray) -> np.ndarray:
    """Split index (into the carved splits) of lines first_line.. of a train file: a seeded hash."""
    key = mix64(np.uint64(seed) * np.uint64(1_000_003) + np.uint64(file_index))
    u = mix64(key ^ np.arange(first_line, first_line + n, dtype=np.uint64)) >> np.uint64(11)
    return np.searchsorted(thresholds, u.astype(np.float64) / 2.0 ** 53, side="right")


def criteo_schema(c: CriteoConfig) -> Schema:
    """26 context features (Criteo has no users or items), tables sized by `num_embeddings`."""
    sizes = c.num_embeddings if len(c.num_embeddings) == NUM_SPARSE else c.num_embeddings * NUM_SPARSE
    return Schema(DENSE, tuple(SparseFeature(name, n, "context") for name, n in zip(SPARSE, sizes)))


def check_files(c: CriteoConfig) -> None:
    """DataError naming the key of a listed file that is not there, or a .gz one that is not gzip."""
    for key, paths in (("train_paths", c.train_paths), ("val_paths", c.val_paths), ("test_paths", c.test_paths)):
        for i, p in enumerate(map(Path, paths)):
            if not p.is_file():
                raise DataError(f"data.criteo.{key}[{i}]: no such file: {p}")
            if p.suffix == ".gz":
                with open(p, "rb") as f:
                    if f.read(2) != GZIP_MAGIC:
                        raise DataError(f"data.criteo.{key}[{i}]: {p} is not a gzip file (its name ends in .gz)")


class CriteoDataset:
    """A `ClickDataset` streaming Criteo TSV files; each split reads its own files, or the lines
    of train_paths that a seeded hash assigns to it (splits without files share train_paths in
    proportion to their fractions). `shuffle` permutes rows within each chunk."""

    def __init__(self, config: DataConfig, seed: int):
        c = config.criteo
        self.seed, self.chunk_rows = seed, c.chunk_rows
        self.schema = criteo_schema(c)
        self._sizes = np.array([f.num_embeddings for f in self.schema.sparse], dtype=np.int64)
        own = {"train": (), "val": c.val_paths, "test": c.test_paths}
        self._carved = [s for s in ("train", "val", "test") if not own[s]]
        fractions = config.fractions()
        shares = np.array([fractions[s] for s in self._carved])
        self._thresholds = np.cumsum(shares / shares.sum())[:-1]
        self._files = {s: [Path(p) for p in own[s]] for s in own}
        self._files["train"] = [Path(p) for p in c.train_paths]
        check_files(c)
        self._num_rows: dict[str, int] = {}

    def num_rows(self, split: Split) -> int:
        """Exact; the first call per split reads the files once (and is cached)."""
        if split not in self._num_rows:
            self._num_rows[split] = sum(self._count(split, i, p)
                                        for i, p in enumerate(self._sources(split)))
        return self._num_rows[split]

    def batches(self, split: Split, batch_size: int, *, epoch: int = 0, shuffle: bool = False,
                rank: int = 0, world_size: int = 1, drop_last: bool = False,
                positives_only: bool = False) -> Iterator[Batch]:
        return rank_batches(self._segments(split, epoch, shuffle, positives_only),
                            self.schema.keys(), batch_size, rank=rank, world_size=world_size,
                            drop_last=drop_last)

    def item_popularity(self) -> np.ndarray:
        raise DataError("criteo: has no items, so no item popularity")

    def retrieval(self, split: Split) -> RetrievalData:
        raise DataError("criteo: has no users and items, so no retrieval evaluation")

    def _sources(self, split: Split) -> list[Path]:
        return self._files["train"] if split in self._carved else self._files[split]

    def _count(self, split: Split, file_index: int, path: Path) -> int:
        if split not in self._carved:
            return count_lines(path)
        n, step, code = count_lines(path), 1 << 22, self._carved.index(split)
        return sum(int((line_splits(self.seed, file_index, a, min(step, n + 1 - a),
                                    self._thresholds) == code).sum())
                   for a in range(1, n + 1, step))

    def _segments(self, split: Split, epoch: int, shuffle: bool,
                  positives_only: bool) -> Iterator[Segment]:
        chunk = rows = 0
        for file_index, path in enumerate(self._sources(split)):
            for first_line, data in read_chunks(path, self.chunk_rows):
                log = self._log(split, file_index, path, first_line, data)
                rows += len(log)
                yield log, row_order(log.labels, seed=self.seed, split=split, epoch=epoch,
                                     chunk=chunk, shuffle=shuffle, positives_only=positives_only)
                chunk += 1
        if not rows:
            raise DataError(f"criteo: the {split} split is empty "
                            f"(files: {', '.join(map(str, self._sources(split))) or 'none'})")

    def _log(self, split: Split, file_index: int, path: Path, first_line: int, data: bytes) -> ClickLog:
        labels, dense, ids = parse_chunk(data, path, first_line, self._sizes)
        if split in self._carved and len(self._carved) > 1:
            keep = line_splits(self.seed, file_index, first_line, len(labels),
                               self._thresholds) == self._carved.index(split)
            labels, dense, ids = labels[keep], dense[keep], ids[keep]
        return ClickLog(labels, dense, tuple(Jagged.from_ids(ids[:, j]) for j in range(NUM_SPARSE)))
