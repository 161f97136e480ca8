"""The generated Criteo-format log: read back exactly by the Criteo reader, reproducible, cached,
atomic, and drawn from the click model it documents."""
import json

import numpy as np
import pytest

from recsys.data import criteo_like
from recsys.data.config import CriteoConfig, CriteoLikeConfig, DataConfig
from recsys.data.criteo import NUM_SPARSE, mix64, parse_chunk
from recsys.data.criteo_like import EFFECT_STD, INTERACTIONS, CriteoLikeTruth, cardinalities, ensure, format_tsv
from recsys.data.sources import load_dataset
from recsys.errors import ConfigError

SMALL = CriteoLikeConfig(num_rows=5_000, max_cardinality=500, chunk_rows=1_500)


def test_lines_read_back_as_written(tmp_path):
    model = CriteoLikeTruth(SMALL, seed=1)
    counts, ranks, p = model.sample(np.random.default_rng(0), 400)
    labels = (np.random.default_rng(1).random(400) < p).astype(np.int64)
    text = format_tsv(labels, counts, ranks)
    lines = text.decode().split("\n")
    assert lines[-1] == "" and len(lines) == 401
    salts = [int(mix64(np.uint64(k + 101))) for k in range(NUM_SPARSE)]
    for line, label, c, r in zip(lines, labels, counts, ranks):
        fields = line.split("\t")
        assert len(fields) == 40 and fields[0] == str(label)
        assert fields[1:14] == [str(v) if v >= 0 else "" for v in c]
        assert fields[14:] == [format(int(mix64(np.uint64(v) ^ np.uint64(s))) & 0xFFFFFFFF, "08x") if v >= 0 else ""
                               for v, s in zip(r, salts)]
    parsed_labels, dense, ids = parse_chunk(text, tmp_path / "log.tsv", 1, np.full(NUM_SPARSE, 1 << 40))
    assert parsed_labels.tolist() == labels.tolist()
    assert np.allclose(dense, np.log1p(np.maximum(counts, 0)), rtol=1e-6)
    for k in range(NUM_SPARSE):  # same value -> same id; distinct values -> distinct ids (2^40 buckets)
        pairs = set(zip(ranks[:, k].tolist(), ids[:, k].tolist()))
        assert len(pairs) == len(set(ranks[:, k].tolist())) == len(set(ids[:, k].tolist()))


def test_the_log_follows_its_click_model():
    model = CriteoLikeTruth(SMALL, seed=2)
    counts, ranks, p = model.sample(np.random.default_rng(5), 100_000)
    labels = np.random.default_rng(6).random(len(p)) < p
    assert labels.mean() == pytest.approx(SMALL.base_ctr, abs=0.01)
    deciles = np.searchsorted(np.quantile(p, np.linspace(0.1, 0.9, 9)), p)
    for d in range(10):  # calibrated: the click rate of each decile of P(click) is its mean P(click)
        assert labels[deciles == d].mean() == pytest.approx(p[deciles == d].mean(), abs=0.015)
    interacting = {k for pair in INTERACTIONS for k in pair}
    noise = [k for k, s in enumerate(EFFECT_STD) if s == 0 and k not in interacting]
    counts, ranks = counts[:2000], ranks[:2000]
    for k in range(NUM_SPARSE):
        changed = ranks.copy()
        changed[:, k] = np.where(changed[:, k] >= 0, (changed[:, k] + 1) % cardinalities(SMALL)[k], -1)
        moved = not np.allclose(model.logit(counts, changed), model.logit(counts, ranks))
        assert moved == (k not in noise), f"C{k + 1}"
    empirical = np.bincount(ranks[:, 0][ranks[:, 0] >= 0], minlength=cardinalities(SMALL)[0])
    assert empirical[0] > empirical[9] > empirical[99]  # Zipf: frequency falls with rank


def test_generated_once_reproducible_and_keyed_on_config(tmp_path):
    a = ensure(SMALL, 3, tmp_path / "a")
    b = ensure(SMALL, 3, tmp_path / "b")
    assert (a / "log.tsv").read_bytes() == (b / "log.tsv").read_bytes()
    assert (a / "log.tsv").read_bytes().count(b"\n") == SMALL.num_rows
    truth = json.loads((a / "truth.json").read_text())
    assert truth["seed"] == 3 and truth["config"]["num_rows"] == SMALL.num_rows
    assert 0.5 < truth["true_probability_metrics"]["auc"] < 1.0
    stamp = (a / "log.tsv").stat().st_mtime_ns
    assert ensure(SMALL, 3, tmp_path / "a") == a and (a / "log.tsv").stat().st_mtime_ns == stamp
    other = ensure(CriteoLikeConfig(num_rows=4_000, max_cardinality=500), 3, tmp_path / "a")
    assert other != a and (other / "log.tsv").read_bytes().count(b"\n") == 4_000


def test_a_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def fail_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return format_tsv(*args)

    monkeypatch.setattr(criteo_like, "format_tsv", fail_second)
    with pytest.raises(KeyboardInterrupt):
        ensure(SMALL, 0, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_source_reads_the_generated_log_and_refuses_paths(tmp_path):
    config = DataConfig(source="criteo_like", cache_dir=str(tmp_path), criteo_like=SMALL,
                        criteo=CriteoConfig(num_embeddings=(1000,)))
    data = load_dataset(config, seed=0)
    assert sum(data.num_rows(s) for s in ("train", "val", "test")) == SMALL.num_rows
    assert data.num_rows("test") == pytest.approx(SMALL.num_rows * config.test_fraction, rel=0.1)
    with pytest.raises(ConfigError, match="criteo.train_paths: must be empty when source = 'criteo_like'"):
        DataConfig(source="criteo_like", criteo=CriteoConfig(train_paths=("day_0.tsv",)))
