"""Sticky, deterministic assignment of units to arms, and a layout of [0, 1) that moves as few
units as possible when the weights change.

A unit's point is u = h / 2^53, h a 53-bit keyed hash of the unit id (`unit_hash`; the key is
blake2b of the experiment's salt): the same unit always lands on the same point, independently of
every other unit. The hash is a splitmix64-style absorption rather than blake2b per unit so that a
client can assign a million units a second in numpy (`unit_hashes`); both forms agree bit for bit. The layout cuts the
integer range [0, 2^53) into segments, each owned by one arm; an arm's share is the total length
of its segments. Plain cumulative intervals would shift every boundary after the first changed
weight; `Layout.rebalance` instead lets each shrinking arm keep all but the mass it gives up and
hands the freed pieces to the growing arms, so exactly the total variation distance between
the old and new (quantised) weights changes hands. Everything is integer arithmetic on values
below 2^53 (exact in JSON and in float64), so any process holding the same snapshot assigns
bit-identically.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.checks import positive_int
from bandit.errors import BanditInputError

BITS = 53
SCALE = 1 << BITS
MAX_UNIT = 256
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of uint64 with full avalanche), elementwise, mod 2^64."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix_int(z: int) -> int:
    """`_mix` on one Python int (the same function, without numpy's per-call cost)."""
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & _MASK
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def salt_key(salt: str) -> int:
    """The experiment's 64-bit hashing key: blake2b of its salt (1 to 256 characters)."""
    if not isinstance(salt, str) or not 0 < len(salt) <= 256:
        raise BanditInputError("salt", f"expected 1 to 256 characters, got {salt!r}")
    return int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "little")


def check_unit(unit_id: object, field: str = "unit_id") -> str:
    """A unit id: 1 to MAX_UNIT characters, no NUL."""
    if not isinstance(unit_id, str) or not 0 < len(unit_id) <= MAX_UNIT or "\0" in unit_id:
        raise BanditInputError(field, f"expected 1 to {MAX_UNIT} characters without NUL, got {unit_id!r:.80}")
    return unit_id


def unit_hash(key: int, unit_id: str) -> int:
    """The unit's point in [0, 2^53). The id's code points (UTF-32LE, two per 64-bit word, the
    last word zero-padded) are absorbed as h = mix(h ^ word), from h = key ^ (length x golden
    ratio); the result is mix(h) >> 11."""
    raw = unit_id.encode("utf-32-le")
    raw += bytes(-len(raw) % 8)
    h = key ^ ((len(unit_id) * _GOLDEN) & _MASK)
    for i in range(0, len(raw), 8):
        h = _mix_int(h ^ int.from_bytes(raw[i:i + 8], "little"))
    return _mix_int(h) >> (64 - BITS)


def unit_hashes(key: int, unit_ids: Sequence[str]) -> np.ndarray:
    """`unit_hash` of many ids at once (uint64), vectorised over ids of similar length."""
    ids = list(unit_ids)
    n_words = (np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) + 1) // 2
    group = np.ceil(np.log2(np.maximum(n_words, 1))).astype(np.int64)
    out = np.empty(len(ids), dtype=np.uint64)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        part = ids if len(rows) == len(ids) else [ids[i] for i in rows.tolist()]
        out[rows] = _hash_words(key, part, n_words[rows], int(n_words[rows].max()))
    return out


def _hash_words(key: int, ids: list[str], n_words: np.ndarray, width: int) -> np.ndarray:
    """The hashes of ids of at most `width` words, as (len(ids), width) little-endian uint64."""
    words = np.asarray(ids, dtype=f"<U{2 * max(width, 1)}").view("<u8").reshape(len(ids), width)
    lengths = np.fromiter(map(len, ids), dtype=np.uint64, count=len(ids))
    with np.errstate(over="ignore"):
        h = np.uint64(key) ^ (lengths * np.uint64(_GOLDEN))
        for j in range(width):
            h = np.where(n_words > j, _mix(h ^ words[:, j]), h)
        return _mix(h) >> np.uint64(64 - BITS)


def quantise(weights: Sequence[float] | np.ndarray) -> list[int]:
    """Integer masses summing to 2^53, in proportion to non-negative finite `weights`."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise BanditInputError("weights", f"expected non-negative finite numbers with a positive sum, got {w}")
    cum = np.cumsum(w) / w.sum()
    edges = [0] + [min(int(round(c * SCALE)), SCALE) for c in cum[:-1]] + [SCALE]
    return [b - a for a, b in zip(edges, edges[1:])]


@dataclass(frozen=True)
class Layout:
    """Segments [starts[i], starts[i+1]) of [0, 2^53) (the last ends at 2^53), owned by owners[i]."""

    n_arms: int
    starts: tuple[int, ...]
    owners: tuple[int, ...]

    def __post_init__(self) -> None:
        positive_int(self.n_arms, "layout.n_arms")
        if len(self.starts) != len(self.owners) or not self.starts or self.starts[0] != 0:
            raise BanditInputError("layout.starts", "expected one start per owner, the first at 0")
        if any(not isinstance(s, int) or isinstance(s, bool) for s in self.starts) or \
                any(b <= a for a, b in zip(self.starts, self.starts[1:])) or self.starts[-1] >= SCALE:
            raise BanditInputError("layout.starts", f"expected increasing integers in [0, 2^{BITS})")
        if any(not isinstance(o, int) or isinstance(o, bool) or not 0 <= o < self.n_arms for o in self.owners):
            raise BanditInputError("layout.owners", f"expected arm ids in 0..{self.n_arms - 1}")

    @classmethod
    def initial(cls, weights: Sequence[float] | np.ndarray) -> Layout:
        """Consecutive intervals in arm order."""
        return _build(len(weights), [(arm, m) for arm, m in enumerate(quantise(weights)) if m > 0])

    def masses(self) -> list[int]:
        """Each arm's total length out of 2^53."""
        out = [0] * self.n_arms
        for (start, end), owner in zip(self._bounds(), self.owners):
            out[owner] += end - start
        return out

    def weights(self) -> np.ndarray:
        """Each arm's share of units: its propensity (exact float: mass / 2^53)."""
        return self._weights.copy()

    @functools.cached_property
    def _weights(self) -> np.ndarray:
        return np.array(self.masses(), dtype=np.float64) / SCALE

    def rebalance(self, weights: Sequence[float] | np.ndarray) -> Layout:
        """The layout for new weights that reassigns only the mass shrinking arms give up.

        A shrinking arm frees its shortest segments first (whole, then part of the last from its
        end), so segments stay few; growing arms fill the freed pieces in order."""
        target = quantise(weights)
        if len(target) != self.n_arms:
            raise BanditInputError("weights", f"expected {self.n_arms} weights, got {len(target)}")
        surplus = [m - t for m, t in zip(self.masses(), target)]
        keep: list[tuple[int, int, int]] = []  # (start, length, owner)
        freed: list[tuple[int, int]] = []
        order = sorted(range(len(self.owners)), key=lambda i: (self._length(i), i))
        for i in order:
            start, owner, length = self.starts[i], self.owners[i], self._length(i)
            give = min(max(surplus[owner], 0), length)
            surplus[owner] -= give
            if give < length:
                keep.append((start, length - give, owner))
            if give:
                freed.append((start + length - give, give))
        deficits = [(arm, -s) for arm, s in enumerate(surplus) if s < 0]
        keep += _fill(sorted(freed), deficits)
        keep.sort()
        return _build(self.n_arms, [(owner, length) for _, length, owner in keep])

    def arm_of(self, h: int) -> int:
        """The arm of one unit point (`assign` for one value, without numpy)."""
        return self.owners[bisect.bisect_right(self.starts, h) - 1]

    def assign(self, hashes: np.ndarray) -> np.ndarray:
        """The arm of each unit point (uint64 array of values below 2^53)."""
        idx = np.searchsorted(np.asarray(self.starts, dtype=np.uint64), hashes, side="right") - 1
        return np.asarray(self.owners, dtype=np.int64)[idx]

    def _bounds(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, list(self.starts[1:]) + [SCALE]))

    def _length(self, i: int) -> int:
        end = self.starts[i + 1] if i + 1 < len(self.starts) else SCALE
        return end - self.starts[i]


def _fill(freed: list[tuple[int, int]], deficits: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Cut the freed pieces (start, length), in order, among arms owed (arm, mass)."""
    out = []
    pieces = list(freed)
    for arm, owed in deficits:
        while owed > 0:
            start, length = pieces.pop(0)
            take = min(owed, length)
            out.append((start, take, arm))
            owed -= take
            if take < length:
                pieces.insert(0, (start + take, length - take))
    return out


def _build(n_arms: int, runs: list[tuple[int, int]]) -> Layout:
    """A layout from consecutive (owner, length) runs, merging neighbours of one owner."""
    starts: list[int] = []
    owners: list[int] = []
    pos = 0
    for owner, length in runs:
        if length <= 0:
            continue
        if not owners or owners[-1] != owner:
            starts.append(pos)
            owners.append(owner)
        pos += length
    if pos != SCALE:
        raise BanditInputError("layout", f"segments cover {pos} of 2^{BITS}")
    return Layout(n_arms, tuple(starts), tuple(owners))
