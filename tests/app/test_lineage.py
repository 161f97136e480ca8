"""The one comparison of a stored run config with the current config: typed, defaults filled in,
where data is cached ignored, the first differing key named."""
from __future__ import annotations

from pathlib import Path

import pytest

from recsys.app.config import load_config
from recsys.app.lineage import check_trained, difference
from recsys.errors import CheckpointError

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"
KEYS = ("seed", "data", "dlrm.model")


def test_the_same_config_matches_even_with_defaults_left_out_and_data_cached_elsewhere() -> None:
    config = load_config(QUICKSTART)
    stored = config.to_dict()
    assert difference(config, stored, KEYS) is None
    stored["data"]["cache_dir"] = "/somewhere/else"
    del stored["dlrm"]["model"]["arch"]  # a key added to the config since: its default applies
    assert difference(config, stored, KEYS) is None
    assert difference(config, stored, ("compress", "simulator")) is None


@pytest.mark.parametrize("override, key", [
    ({"seed": 1}, "seed"),
    ({"data.synthetic.num_items": 999}, "data"),
    ({"dlrm.model.over_arch": [32, 1]}, "dlrm.model"),
])
def test_the_first_differing_key_is_named(override, key) -> None:
    config, other = load_config(QUICKSTART), load_config(QUICKSTART, override).to_dict()
    assert difference(config, other, KEYS) == key
    with pytest.raises(CheckpointError, match=f"^here: trained with a different `{key}` than this config"):
        check_trained(config, other, Path("here"), KEYS)


@pytest.mark.parametrize("broken", [{}, {"seed": "0"}, {"seed": 0, "data": 5}, {"seed": 0, "data": {"colour": 1}}])
def test_missing_or_malformed_records_differ(broken) -> None:
    config = load_config(QUICKSTART)
    assert difference(config, broken, KEYS) in ("seed", "data")
    assert difference(config, {**config.to_dict(), "compress": None}, ("compress",)) == "compress"
