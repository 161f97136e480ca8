"""Sticky assignment: the hash's scalar and vectorised forms agree, shares follow the weights,
and a weight change moves exactly the total variation distance of units (and no more)."""
import hashlib

import numpy as np
import pytest

from bandit import BanditInputError
from bandit.assignment import SCALE, Layout, check_unit, quantise, salt_key, unit_hash, unit_hashes
from bandit.client import LocalAssigner

KEY = salt_key("exp-1")


def _ids(n, seed=0):
    """Sequential ids, plus ids of every length from 1 to 256 with non-ASCII characters."""
    rng = np.random.default_rng(seed)
    alphabet = list("abcXYZ019-_ü漢字😀")
    odd = ["".join(rng.choice(alphabet, size=length)) for length in range(1, 257)]
    return [f"user-{i}" for i in range(n - len(odd))] + odd


def test_scalar_and_vectorised_hash_agree_bit_for_bit():
    ids = _ids(20_000)
    np.testing.assert_array_equal(unit_hashes(KEY, ids), np.array([unit_hash(KEY, u) for u in ids], np.uint64))
    assert unit_hash(KEY, "a") != unit_hash(KEY, "a\x01") and unit_hash(KEY, "ab") != unit_hash(salt_key("x"), "ab")


def test_hash_points_are_uniform_and_shares_follow_the_weights():
    ids = [f"user-{i}" for i in range(200_000)]
    u = unit_hashes(KEY, ids) / SCALE
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = len(ids) / 20
    assert ((counts - expected) ** 2 / expected).sum() < 50  # chi-square, 19 df: p ~ 1e-4
    w = np.array([0.1, 0.6, 0.3])
    share = np.bincount(Layout.initial(w).assign(unit_hashes(KEY, ids)), minlength=3) / len(ids)
    assert np.all(np.abs(share - w) < 4 * np.sqrt(w * (1 - w) / len(ids)))


def test_quantised_masses_sum_to_the_whole_range():
    m = quantise([1 / 3, 1 / 3, 1 / 3, 0.0])
    assert sum(m) == SCALE and m[3] == 0 and max(m) - min(m[:3]) <= 1


@pytest.mark.parametrize("seed", range(4))
def test_weight_change_moves_the_total_variation_distance_of_units(seed):
    """Exactly in layout mass, and within sampling error on 100k units; the plain cumulative
    layout moves more (a reordering of boundaries), so the test can tell them apart."""
    rng = np.random.default_rng(seed)
    hashes = unit_hashes(KEY, [f"u{seed}-{i}" for i in range(100_000)])
    layout = Layout.initial(rng.dirichlet(np.ones(4)))
    for _ in range(5):
        new_w = rng.dirichlet(np.ones(4))
        new = layout.rebalance(new_w)
        tv_exact = sum(abs(a - b) for a, b in zip(layout.masses(), new.masses())) // 2
        assert new.masses() == quantise(new_w)
        moved_mass = _moved_mass(layout, new)
        assert moved_mass == tv_exact
        tv = tv_exact / SCALE
        moved = np.mean(layout.assign(hashes) != new.assign(hashes))
        assert abs(moved - tv) <= 4 * np.sqrt(tv * (1 - tv) / len(hashes)) + 1e-9
        layout = new
    assert len(layout.starts) <= 4 * 6


def test_plain_cumulative_layout_moves_more_than_the_distance():
    old, new = Layout.initial([0.5, 0.5]), Layout.initial([0.4, 0.6])  # TV 0.1
    assert _moved_mass(old, old.rebalance([0.4, 0.6])) / SCALE == pytest.approx(0.1)
    assert _moved_mass(old, new) / SCALE == pytest.approx(0.1)  # two arms: the same
    old3 = Layout.initial([0.5, 0.25, 0.25])
    assert _moved_mass(old3, Layout.initial([0.25, 0.25, 0.5])) / SCALE == pytest.approx(0.5)  # TV is 0.25
    assert _moved_mass(old3, old3.rebalance([0.25, 0.25, 0.5])) / SCALE == pytest.approx(0.25)


def test_unchanged_weights_keep_the_layout_and_every_unit():
    layout = Layout.initial([0.2, 0.5, 0.3]).rebalance([0.5, 0.25, 0.25])
    assert layout.rebalance(layout.weights()) == layout


def _moved_mass(a: Layout, b: Layout) -> int:
    """The exact mass of [0, 2^53) whose owner differs between two layouts."""
    cuts = sorted(set(a.starts) | set(b.starts)) + [SCALE]
    return sum(hi - lo for lo, hi in zip(cuts, cuts[1:]) if a.arm_of(lo) != b.arm_of(lo))


def test_local_assigner_from_a_snapshot_matches_the_scalar_path():
    layout = Layout.initial([0.2, 0.5, 0.3]).rebalance([0.6, 0.1, 0.3])
    snap = {"experiment": "e", "version": 3, "salt": "exp-1", "arms": ["a", "b", "c"],
            "starts": list(layout.starts), "owners": list(layout.owners)}
    assigner = LocalAssigner.from_snapshot(snap)
    ids = _ids(5000, seed=1)
    arms, props = assigner.assign_many(ids)
    for i in range(0, 5000, 7):
        name, p = assigner.assign(ids[i])
        assert name == "abc"[arms[i]] and p == props[i] == layout.weights()[arms[i]]


@pytest.mark.parametrize("call, field", [
    (lambda: quantise([0.5, np.nan]), "weights"),
    (lambda: quantise([0.5, -0.1]), "weights"),
    (lambda: quantise([0.0, 0.0]), "weights"),
    (lambda: Layout.initial([0.5, 0.5]).rebalance([0.2, 0.3, 0.5]), "weights"),
    (lambda: check_unit(""), "unit_id"),
    (lambda: check_unit("a\0b"), "unit_id"),
    (lambda: check_unit("x" * 257), "unit_id"),
    (lambda: check_unit(17), "unit_id"),
    (lambda: salt_key(""), "salt"),
    (lambda: Layout(2, (0, 5), (0, 2)), "layout.owners"),
    (lambda: Layout(2, (0, 5, 3), (0, 1, 0)), "layout.starts"),
    (lambda: LocalAssigner.from_snapshot({"arms": ["a"]}), "snapshot"),
])
def test_bad_input_names_the_field(call, field):
    with pytest.raises(BanditInputError, match=f"^{field}: [^\\n]+$"):
        call()


def test_salt_key_is_blake2b_of_the_salt():
    assert salt_key("s") == int.from_bytes(hashlib.blake2b(b"s", digest_size=8).digest(), "little")
