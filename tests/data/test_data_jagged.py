"""Jagged columns and KJT rows: gathers and joins against plain Python lists."""
import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.jagged import Jagged, cat_rows, take_rows, to_kjt


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


def test_take_rows_matches_python_slicing() -> None:
    rng = np.random.default_rng(0)
    lengths = {k: rng.integers(0, 4, 30) for k in ("a", "b")}
    values = {k: rng.integers(0, 100, int(n.sum())) for k, n in lengths.items()}
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=["a", "b"], values=torch.as_tensor(np.concatenate([values["a"], values["b"]])),
        lengths=torch.as_tensor(np.concatenate([lengths["a"], lengths["b"]]), dtype=torch.int32))
    rows = torch.as_tensor([5, 0, 29, 5, 17])
    got = take_rows(kjt, rows)
    for key in ("a", "b"):
        offsets = np.concatenate([[0], np.cumsum(lengths[key])])
        expected = [values[key][offsets[r]:offsets[r + 1]].tolist() for r in rows.tolist()]
        assert [x.tolist() for x in got[key].to_dense()] == expected


def test_cat_rows_joins_kjts_row_after_row() -> None:
    a = KeyedJaggedTensor.from_lengths_sync(keys=["x", "y"], values=torch.tensor([1, 2, 3, 4, 5]),
                                            lengths=torch.tensor([2, 0, 1, 2], dtype=torch.int32))
    b = KeyedJaggedTensor.from_lengths_sync(keys=["x", "y"], values=torch.tensor([6, 7, 8]),
                                            lengths=torch.tensor([1, 2], dtype=torch.int32))
    both = cat_rows([a, b])
    assert both.stride() == 3 and both.keys() == ["x", "y"]
    assert [r.tolist() for r in both["x"].to_dense()] == [[1, 2], [], [6]]
    assert [r.tolist() for r in both["y"].to_dense()] == [[3], [4, 5], [7, 8]]
    assert torch.equal(take_rows(both, torch.tensor([0, 1])).values(), a.values())
    with pytest.raises(ValueError, match="different keys"):
        cat_rows([a, KeyedJaggedTensor.from_lengths_sync(keys=["y", "x"], values=torch.tensor([1, 2]),
                                                         lengths=torch.tensor([1, 1], dtype=torch.int32))])
