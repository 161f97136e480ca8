"""Arrays computed once per machine (bandit.array_cache): a later call reads the very array back
without computing, a changed key computes anew, a damaged or foreign file is recomputed and
replaced (never unpickled), and a folder that cannot be written costs only the time. The decision
rule's boundary simulation read from the cache equals the simulation itself, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from bandit import decision
from bandit.array_cache import cache_folder, cached_array

SHAPE = (50, 7)


class Counted:
    """A computation that counts its calls."""

    def __init__(self, seed: int = 0) -> None:
        self.calls, self.seed = 0, seed

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return np.random.default_rng(self.seed).standard_normal(SHAPE)


class Trap:
    """Unpickling it creates the file at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def only_file(folder) -> object:
    files = list(folder.iterdir())
    assert len(files) == 1, files  # no temporary file left beside it
    return files[0]


def test_the_second_call_reads_the_array_back_without_computing(folder):
    compute = Counted()
    first = cached_array("demo", "key", compute, SHAPE)
    assert compute.calls == 1 and cache_folder() == folder
    assert only_file(folder).name.startswith("demo-")
    again = cached_array("demo", "key", compute, SHAPE)
    assert compute.calls == 1
    assert again.tobytes() == first.tobytes() == Counted()().tobytes()


def test_another_key_computes_anew_into_its_own_file(folder):
    one, other = Counted(0), Counted(1)
    a = cached_array("demo", "key 1", one, SHAPE)
    b = cached_array("demo", "key 2", other, SHAPE)
    assert one.calls == other.calls == 1
    assert not np.array_equal(a, b)
    assert len(list(folder.iterdir())) == 2


@pytest.mark.parametrize("damage", ["truncated", "other shape", "pickled objects", "not npy"])
def test_a_damaged_or_foreign_file_is_recomputed_and_replaced(folder, damage):
    compute = Counted()
    cached_array("demo", "key", compute, SHAPE)
    path = only_file(folder)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "other shape":
        np.save(path, np.zeros((3, 3)))
    elif damage == "pickled objects":
        np.save(path, np.array([Trap(str(folder.parent / "unpickled"))], dtype=object), allow_pickle=True)
    else:
        path.write_text("hello")
    out = cached_array("demo", "key", compute, SHAPE)
    assert compute.calls == 2
    assert out.tobytes() == Counted()().tobytes()
    assert np.load(path, allow_pickle=False).tobytes() == out.tobytes()  # replaced whole
    assert not (folder.parent / "unpickled").exists()


def test_a_folder_that_cannot_be_written_costs_only_the_time(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(blocker / "cache"))
    compute = Counted()
    assert cached_array("demo", "key", compute, SHAPE).tobytes() == Counted()().tobytes()
    assert cached_array("demo", "key", compute, SHAPE).tobytes() == Counted()().tobytes()
    assert compute.calls == 2
    assert blocker.read_text() == "not a folder"


def test_a_computation_of_the_wrong_shape_is_refused(folder):
    with pytest.raises(ValueError, match=r"demo: computed an array of shape \(50, 7\), not \(2, 2\)"):
        cached_array("demo", "key", Counted(), (2, 2))
    assert not folder.exists() or not list(folder.iterdir())


@pytest.mark.parametrize("scaled", [False, True])
def test_the_boundary_simulation_read_from_the_cache_is_the_simulation(folder, monkeypatch, scaled):
    decision._boundary_maxima.cache_clear()
    simulated = decision._simulated_maxima(scaled, 300)
    first = decision._boundary_maxima(scaled, 300)
    decision._boundary_maxima.cache_clear()

    def not_again(*args):
        raise AssertionError("simulated again despite the cache")

    monkeypatch.setattr(decision, "_simulated_maxima", not_again)
    read = decision._boundary_maxima(scaled, 300)
    decision._boundary_maxima.cache_clear()
    assert read.shape == (300, len(decision._HORIZONS))
    assert read.tobytes() == first.tobytes() == simulated.tobytes()
