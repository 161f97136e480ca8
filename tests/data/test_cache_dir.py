"""`data.cache_dir` says where data lives, not what it is: the default follows $RECSYS_DATA_DIR when
read, moving the cache changes no fingerprint, and the OBD path reads the cache it is given."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.app.config import load_config
from recsys.data import packaged
from recsys.data.config import DataConfig
from simulator.calibration import calibrate_obd

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"


def test_default_cache_follows_the_environment_when_read(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RECSYS_DATA_DIR", raising=False)
    assert DataConfig().cache_dir == ".cache/data" and packaged.default_cache() == Path(".cache/data")
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    assert DataConfig().cache_dir == str(tmp_path) and packaged.default_cache() == tmp_path


def test_cache_dir_is_not_part_of_the_data_or_the_fingerprint(tmp_path: Path) -> None:
    base = load_config(QUICKSTART)
    moved = load_config(QUICKSTART, {"data.cache_dir": str(tmp_path)})
    other = load_config(QUICKSTART, {"data.synthetic.num_rows": 1000})
    assert moved.data.cache_dir == str(tmp_path) and moved.data == base.data
    assert moved.fingerprint("dlrm") == base.fingerprint("dlrm")
    assert other.fingerprint("dlrm") != base.fingerprint("dlrm") and other.data != base.data


def _fake_obd(cache: Path, clicks: dict[int, tuple[int, int]]) -> None:
    """An OBD folder as `fetch` leaves it, with `clicks[position] = (clicks, impressions)`."""
    folder = cache / "obd" / "random" / "all"
    folder.mkdir(parents=True)
    rows = [f"{pos * 10_000 + i},{i % 80},{pos},{int(i < c)},0.0125" for pos, (c, n) in clicks.items()
            for i in range(n)]
    (folder / "all.csv").write_text("timestamp,item_id,position,click,propensity_score\n" + "\n".join(rows) + "\n")
    (folder / "item_context.csv").write_text("item_id\n" + "\n".join(map(str, range(80))) + "\n")


def test_obd_calibration_reads_the_given_cache(tmp_path: Path) -> None:
    _fake_obd(tmp_path, {1: (8, 1000), 2: (6, 1000), 3: (5, 1000)})
    assert packaged.fetch(packaged.OPEN_BANDIT, tmp_path) == tmp_path / "obd"  # present: nothing downloaded
    cal = calibrate_obd(cache_dir=tmp_path)
    np.testing.assert_allclose(cal.observed_ctr, [0.008, 0.006, 0.005])
    np.testing.assert_allclose(cal.examination, [1.0, 0.75, 0.625])
    assert cal.base_ctr == 0.008
