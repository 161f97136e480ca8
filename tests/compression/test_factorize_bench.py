"""bench/compression_bench.py's beyond_ensemble part: its variants are the beyond part's rank-4 ones
(int4, and mixed precision at 32x) with the same fine-tuning plus the ensemble members' folders,
and a missing member is one line naming it."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig

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
    """--tune-ranks and --reuse reach the MovieLens and the Criteo-like beyond part alike; the Criteo-like
    teacher (57M floats) gets the grid around the goal, MovieLens the whole one."""
    seen = []
    monkeypatch.setattr(bench, "teacher", lambda *a, **k: None)
    monkeypatch.setattr(bench, "dataset_of", lambda exported: None)
    monkeypatch.setattr(bench, "beyond_part", lambda *a: seen.append(a))
    monkeypatch.setattr(sys, "argv", ["compression_bench.py", "--parts", part, "--tune-ranks", "4,8", "--reuse",
                                      "--out", str(tmp_path)])
    bench.main()
    ((*_, grid, out, reuse, tuned),) = seen
    assert (out.parent, reuse, tuned) == (tmp_path, True, (4, 8))
    assert grid is (bench.GRID if part == "beyond" else bench.BIG_GRID)


def test_threads_reach_torch_and_the_teachers_training(bench, monkeypatch, tmp_path: Path) -> None:
    """--threads sets torch's intra-op threads and the teacher's train.threads; below 1 is one line."""
    seen = []
    monkeypatch.setattr(bench, "teacher", lambda config, out, *sets: seen.append(sets))
    monkeypatch.setattr(bench, "dataset_of", lambda exported: None)
    monkeypatch.setattr(bench, "beyond_part", lambda *a: None)
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(sys, "argv", ["compression_bench.py", "--parts", "beyond_criteo", "--threads", "1",
                                          "--out", str(tmp_path)])
        bench.main()
        assert torch.get_num_threads() == 1 and "train.threads=1" in seen[0]
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(sys, "argv", ["compression_bench.py", "--parts", "beyond", "--threads", "0",
                                      "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        bench.main()
    assert str(e.value) == "error: --threads must be at least 1, got 0"


def test_the_big_grid_builds_ranks_8_and_4_and_compares_at_24x_and_32x(bench) -> None:
    """On large tables the big grid is uniform precisions, ranks 8 and 4 fine-tuned (int8/int4 A) and
    SVD only, and at 24x and 32x pruning against factorize at the rank that fits: 8 and 4."""
    model = nn.Module()
    model.ebc = EmbeddingBagCollection(tables=[EmbeddingBagConfig(name=f"t{i}", embedding_dim=64, num_embeddings=n,
                                                                  feature_names=[f"f{i}"])
                                               for i, n in enumerate((20_000, 5_000, 300))])
    beyond = bench.beyond_variants(SimpleNamespace(model=model), {"epochs": 1}, None, bench.BIG_GRID)
    names = [v["name"] for v in beyond.variants]
    assert names[:13] == ["int8", "int4", "int2", bench.CONTROL, "f8-int8", "f8-int4", "f4-int8", "f4-int4",
                          "f8-svd-int4", "f4-svd-int4", "f2-svd-int8", "f2-svd-fp16", "f1-svd-fp16"]
    assert {t: at["factorize"] for t, at in beyond.equal.items()} == {24.0: "f8-24x", 32.0: "f4-32x"}
    assert all(at["pruning"].startswith("prune") and "mixed precision" not in at for at in beyond.equal.values())
    assert len(names) == 17
    # past 42x SVD only (no fine-tuning), rank 1 at fp16: 2 bytes a row
    f1 = from_dict(VariantConfig, beyond.variants[12], "v")
    assert f1.factorize.rank == 1 and f1.factorize.fine_tune is None and f1.quantize.default == "fp16"
    assert {beyond.method[n] for n in names[10:13]} == {"factorize (SVD only)"}
    # the control: the teacher (same model, warm-started from itself) trained as the factorized A were
    control = from_dict(VariantConfig, beyond.variants[3], "v")
    f4 = from_dict(VariantConfig, beyond.variants[6], "v")
    assert control.steps == ("distill",) and control.distill.student == {} and control.distill.warm_start == "truncate"
    assert f4.factorize.fine_tune is not None
    assert control.distill == replace(f4.factorize.fine_tune, warm_start="truncate")
    assert bench.CONTROL not in [v["name"] for v in bench.beyond_variants(SimpleNamespace(model=model), {}).variants]


def test_paired_differences_are_computed_once_per_pair(bench, monkeypatch) -> None:
    """The per-variant table, the headline and equal bytes share one bootstrap per (a, b): the same
    result as computing it directly, and b - a is its own pair."""
    real, calls = bench.paired_auc_difference, []
    monkeypatch.setattr(bench, "paired_auc_difference", lambda *a, **k: calls.append(a) or real(*a, **k))
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(np.float32)
    logits = {"a": y + rng.normal(size=400), "b": y + rng.normal(size=400) * 2}
    paired = bench.Paired(y, logits, 20)
    d = paired("a", "b")
    assert paired("a", "b") is d and len(calls) == 1
    assert d == real(y, logits["a"], logits["b"], rounds=20) and d.delta < 0
    assert paired("b", "a").delta == pytest.approx(-d.delta) and len(calls) == 2


def _row(bench, name: str, qps: float = 100.0):
    return bench.VariantRow(name, 10, 1.0, "auc", 0.7, 0.0, 1.0, 1.0, qps, 4096)


def test_reuse_builds_only_the_variants_the_stored_run_lacks(bench, monkeypatch, tmp_path: Path) -> None:
    """--reuse reads the stored variants and builds only the grid's others into <out>/added (timed
    beside their own fp32); a later --reuse reads them there; if <out>/added lacks one, all of them
    are built again."""
    built: list[list[str]] = []

    def run_rows(run_dir: Path, batch_size=None):
        names = ["fp32", "a"] if run_dir == tmp_path else sorted(p.name for p in (run_dir / "variants").glob("*"))
        return [_row(bench, n, 50.0 if run_dir != tmp_path else 100.0) for n in names]

    def run_part(title, exported, dataset, variants, scale, out):
        built.append([v["name"] for v in variants])
        for n in ["fp32", *built[-1]]:
            (out / "variants" / n).mkdir(parents=True, exist_ok=True)
        return [_row(bench, n, 50.0) for n in ["fp32", *built[-1]]]

    monkeypatch.setattr(bench, "run_rows", run_rows)
    monkeypatch.setattr(bench, "run_part", run_part)
    beyond = bench.Beyond([{"name": n} for n in ("a", "b", "c")])
    rows, folder, base = bench.reuse_or_add("t", None, None, beyond, bench.QUICK, tmp_path)
    assert built == [["b", "c"]]
    assert set(rows) == {"fp32", "a", "b", "c"}
    assert folder == {"fp32": tmp_path, "a": tmp_path, "b": tmp_path / "added", "c": tmp_path / "added"}
    assert base["a"].qps == 100.0 and base["b"].qps == 50.0
    assert bench.reuse_or_add("t", None, None, beyond, bench.QUICK, tmp_path)[1] == folder
    assert built == [["b", "c"]]  # read from <out>/added, nothing built
    (tmp_path / "added" / "variants" / "c").rmdir()
    bench.reuse_or_add("t", None, None, beyond, bench.QUICK, tmp_path)
    assert built == [["b", "c"], ["b", "c"]]


def test_the_headline_names_the_best_without_training_and_the_trained_minus_the_control(bench, capsys) -> None:
    """When the best at >= 32x trained, the headline also names the best variant there without
    training and each trained one minus the teacher trained the same way."""
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(np.float32)
    noise = {"fp32": 1.0, bench.CONTROL: 0.5, "f4": 0.7, "prune": 1.1, "svd": 1.5, "int4": 1.0}
    logits = {n: y + rng.normal(size=y.size) * s for n, s in noise.items()}
    paired = bench.Paired(y, logits, 20)
    ratios = {"fp32": 1.0, bench.CONTROL: 1.0, "f4": 32.8, "prune": 32.0, "svd": 42.0, "int4": 7.1}
    rows = {n: bench.VariantRow(n, int(1000 / r), r, "auc", 1 - s / 10, 0.0, 1.0, 1.0, 1.0, 4096)
            for (n, r), s in zip(ratios.items(), noise.values())}
    beyond = bench.Beyond(method={"fp32": "fp32", bench.CONTROL: "fp32 fine-tuned", "f4": "factorize",
                                  "prune": "pruning", "svd": "factorize (SVD only)", "int4": "quantize"})
    bench.headline(beyond, rows, paired)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("best at >= 32x: f4,")
    assert lines[1].startswith("best without training at >= 32x: prune,")
    assert lines[2] == (f"trained at >= 32x minus {bench.CONTROL} (the extra epoch taken out): "
                        f"f4 {bench.interval(paired(bench.CONTROL, 'f4'))}")
    assert len(lines) == 3
    beyond.method["f4"] = "pruning"  # the best did not train: one line, as before
    bench.headline(beyond, rows, paired)
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
