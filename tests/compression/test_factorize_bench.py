"""bench/compression_bench.py's beyond_ensemble part: its variants are the beyond part's rank-4 ones
(int4, and mixed precision at 32x) with the same fine-tuning plus the ensemble members' folders,
and a missing member is one line naming it."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from compression.config import VariantConfig
from recsys.config_loading import from_dict
from recsys.errors import UserError

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compression_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("compression_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _members(root: Path, names) -> Path:
    for name in names:
        (root / name / "model").mkdir(parents=True)
    return root


def test_ensemble_variants_add_only_the_members_to_the_fine_tuning(bench, tmp_path: Path) -> None:
    members = _members(tmp_path, [m for ms in bench.ENSEMBLES.values() for m in ms])
    fine_tune = {"alpha": 0.3, "epochs": 2, "batch_size": 256, "lr_sparse": 0.03}
    configs = bench.ensemble_variants(fine_tune, members)
    assert set(configs) == set(bench.ENSEMBLES)
    for label, by in configs.items():
        assert set(by) == {"int4", "32x"}
        for suffix, raw in by.items():
            v = from_dict(VariantConfig, raw, "v")
            assert v.name == f"f4-{label}-{suffix}" and v.steps == ("factorize", "quantize")
            assert v.factorize.rank == 4 and not v.factorize.ranks
            tuned = v.factorize.fine_tune
            assert tuned is not None and tuned.ensemble == tuple(str(members / m / "model")
                                                                 for m in bench.ENSEMBLES[label])
            assert (tuned.alpha, tuned.epochs, tuned.batch_size, tuned.lr_sparse, tuned.seed) == (0.3, 2, 256, 0.03, 0)
            assert (v.quantize.default, v.quantize.budget_ratio) == (("int4", None) if suffix == "int4"
                                                                     else ("int8", 32.0))


def test_a_missing_member_is_one_line_naming_it(bench, tmp_path: Path) -> None:
    members = _members(tmp_path, ["dlrm-seed1", "dlrm-seed2"])
    with pytest.raises(UserError) as e:
        bench.ensemble_variants({}, members)
    assert str(e.value).startswith(f"--members: {members / 'dcn-seed0' / 'model'} is missing") \
        and "\n" not in str(e.value)


@pytest.mark.parametrize("part", ["beyond", "beyond_criteo"])
def test_tune_ranks_reaches_both_beyond_parts(bench, monkeypatch, tmp_path: Path, part) -> None:
    """--tune-ranks and --reuse reach the MovieLens and the Criteo-like beyond part alike."""
    seen = []
    monkeypatch.setattr(bench, "teacher", lambda *a, **k: None)
    monkeypatch.setattr(bench, "dataset_of", lambda exported: None)
    monkeypatch.setattr(bench, "beyond_part", lambda *a: seen.append(a))
    monkeypatch.setattr(sys, "argv", ["compression_bench.py", "--parts", part, "--tune-ranks", "4,8", "--reuse",
                                      "--out", str(tmp_path)])
    bench.main()
    ((*_, out, reuse, tuned),) = seen
    assert (out.parent, reuse, tuned) == (tmp_path, True, (4, 8))
