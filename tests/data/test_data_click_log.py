"""ClickLog: a side (user or item) is an index per event and its feature table, both or neither."""
import numpy as np
import pytest

from recsys.data.click_log import ClickLog, FeatureTable
from recsys.data.jagged import Jagged
from recsys.data.schema import SparseFeature
from recsys.errors import DataError


def _table(side: str, n: int) -> FeatureTable:
    return FeatureTable((SparseFeature(f"{side}_id", n, side),), (Jagged.from_ids(np.arange(n)),), n)


def test_rows_join_user_then_item_features():
    log = ClickLog(np.array([1, 0], np.float32), np.zeros((2, 1), np.float32), (),
                   np.array([2, 0]), np.array([1, 1]), _table("user", 3), _table("item", 2))
    rows = log.rows(np.array([1, 0]))
    assert [c.values.tolist() for c in rows.sparse] == [[0, 2], [1, 1]]
    assert log.user_item()[0].tolist() == [2, 0]


def test_an_index_without_its_table_is_refused():
    with pytest.raises(ValueError, match="`item` and `items` must be given together"):
        ClickLog(np.zeros(2, np.float32), np.zeros((2, 1), np.float32), (), None, np.array([0, 1]))
    log = ClickLog(np.zeros(2, np.float32), np.zeros((2, 1), np.float32))
    assert log.rows(np.arange(2)).sparse == ()
    with pytest.raises(DataError, match="no user and item indices"):
        log.user_item()
