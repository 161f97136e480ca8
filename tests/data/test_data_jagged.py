import numpy as np

from recsys.data.jagged import Jagged, to_kjt


def test_take_and_concat_match_python_lists():
    rng = np.random.default_rng(0)
    lists = [list(rng.integers(0, 50, rng.integers(0, 5))) for _ in range(40)]
    col = Jagged.from_lengths(np.array([len(x) for x in lists]), np.concatenate(lists))
    rows = rng.integers(0, 40, 100)
    assert col.take(rows).rows() == [lists[r] for r in rows]
    both = Jagged.concat([col.take(rows[:10]), Jagged.from_ids(np.array([7, 8]))])
    assert both.rows() == [lists[r] for r in rows[:10]] + [[7], [8]]


def test_from_mask_and_kjt_layout():
    mask = np.array([[True, False, True], [False, False, False], [False, True, False]])
    tags = Jagged.from_mask(mask)
    assert tags.rows() == [[0, 2], [], [1]]
    kjt = to_kjt(["a", "b"], [Jagged.from_ids(np.array([5, 6, 7])), tags], 3)
    assert kjt.keys() == ["a", "b"] and kjt.stride() == 3
    assert kjt.lengths().dtype.is_floating_point is False and str(kjt.lengths().dtype) == "torch.int32"
    assert str(kjt.values().dtype) == "torch.int64"
    assert kjt["b"].to_dense() and [t.tolist() for t in kjt["b"].to_dense()] == [[0, 2], [], [1]]
