import pytest

from recsys.config_loading import from_dict
from recsys.data.config import DataConfig
from recsys.errors import ConfigError


def test_defaults_and_nested_values():
    cfg = from_dict(DataConfig, {"source": "movielens", "movielens": {"rating3": "drop"}})
    assert cfg.movielens.rating3 == "drop" and cfg.synthetic.num_users == 2000
    assert abs(sum(cfg.fractions().values()) - 1) < 1e-12


@pytest.mark.parametrize("raw,message", [
    ({"source": "csv"}, "data.source: 'csv' is not one of"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, r"data.val_fraction: val_fraction \+ test_fraction"),
    ({"synthetic": {"base_ctr": 1.5}}, "data.synthetic.base_ctr: must be in"),
    ({"synthetic": {"num_users": 0}}, "data.synthetic.num_users: must be >= 1"),
    ({"criteo": {"num_embeddings": [10, 20]}}, "data.criteo.num_embeddings: give 1 or 26"),
    ({"source": "criteo"}, "data.criteo.train_paths: required"),
    ({"movielens": {"rating_3": "drop"}}, "data.movielens.rating_3: unknown key"),
])
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DataConfig, raw, "data")
