"""The mixed_dim step: its frequency harm against numpy (ids counted from the batches, SVD residuals),
its widths the brute-force optimum within the budget under the closed-form bytes (rows padded to 128
bytes plus each narrowed table's r x d fp32 map), the manifest's and the TBEs' bytes equal to that,
the output sensitivity zero at full width; bad settings refused in one line naming the key."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from compression.build import teacher_of, teacher_task
from compression.config import VariantConfig
from compression.recipe import build_variant, fp32_variant
from compression.tables import float_tables
from compression.variant import MeasuredVariant, save_variants
from recsys.config_loading import from_dict
from recsys.errors import ConfigError


def _config(raw: dict) -> VariantConfig:
    return from_dict(VariantConfig, {"name": "v", **raw}, "compress.variants[0]")


def _bytes(rows: int, dim: int, width: int) -> int:
    """int8 rows of `width` (+4 bytes scale/bias) padded to 128 bytes, plus the map below full width."""
    return -(-rows * (width + 4) // 128) * 128 + (width * dim * 4 if width < dim else 0)


def _counts(dataset, tables) -> dict[str, np.ndarray]:
    out = {n: np.zeros(t.num_embeddings) for n, t in tables.items()}
    table_of = {f: n for n, t in tables.items() for f in t.feature_names}
    for batch in dataset.batches("train", 4096):
        real = batch.labels.numpy() >= 0
        for key, jt in batch.sparse_features.to_dict().items():
            lengths = jt.lengths().numpy()
            ids = np.split(jt.values().numpy(), np.cumsum(lengths)[:-1])
            for row in np.nonzero(real)[0]:
                np.add.at(out[table_of[key]], ids[row], 1)
    return out


def test_frequency_widths_are_the_optimum_within_budget_and_the_bytes_counted(tiny_exported, tiny_dataset, tmp_path):
    exported = tiny_exported("dlrm")
    teacher, task = teacher_of(exported), teacher_task(exported, tiny_dataset)
    tables = float_tables(exported.model)
    fp32 = sum(-(-t.num_embeddings * t.dim * 4 // 128) * 128 for t in tables.values())
    config = _config({"steps": ["mixed_dim", "quantize"], "mixed_dim": {"budget_ratio": 3.5, "dims": [4, 2, 1]},
                      "quantize": {"default": "int8"}})
    variant = build_variant(teacher, task, config)
    notes = variant.notes["mixed_dim"]
    counts = _counts(tiny_dataset, tables)
    total = sum(c.sum() for c in counts.values())
    for name, t in tables.items():
        e = t.weight.double().numpy()
        u, s, vh = np.linalg.svd(e, full_matrices=False)
        whole = _bytes(t.num_embeddings, t.dim, t.dim)
        options = [t.dim] + [r for r in (4, 2) if _bytes(t.num_embeddings, t.dim, r) < whole]
        assert list(notes["harm"][name]) == options  # 1 does not pack int8
        for r in options:
            residual = ((e - (u[:, :r] * s[:r]) @ vh[:r]) ** 2).sum(1)
            assert notes["harm"][name][r] == pytest.approx((counts[name] * residual).sum() / total, rel=1e-6, abs=1e-12)
    names = list(tables)
    budget = fp32 / 3.5
    plans = [dict(zip(names, combo)) for combo in itertools.product(*(list(notes["harm"][n]) for n in names))]

    def size(plan: dict[str, int]) -> int:
        return sum(_bytes(tables[n].num_embeddings, tables[n].dim, r) for n, r in plan.items())

    best = min((p for p in plans if size(p) <= budget), key=lambda p: (sum(notes["harm"][n][r] for n, r in p.items()),
                                                                         size(p)))
    assert notes["widths"] == best and len(set(best.values())) > 1  # genuinely mixed
    assert {n: t.dim for n, t in variant.tables.items()} == best
    [_, manifest] = save_variants(tmp_path / "set", [MeasuredVariant(fp32_variant(teacher), {}, {}),
                                                    MeasuredVariant(variant, {}, {})])
    assert manifest["size"]["total"] == size(best) == variant.scorer().runtime_bytes() <= budget


def test_output_sensitivity_is_zero_at_full_width_and_grows_as_width_falls(tiny_exported, tiny_dataset):
    exported = tiny_exported("dlrm")
    config = _config({"steps": ["mixed_dim"], "mixed_dim": {"budget_ratio": 1.5, "dims": [4, 2, 1],
                                                              "sensitivity": "output", "sensitivity_batches": 2}})
    variant = build_variant(teacher_of(exported), teacher_task(exported, tiny_dataset), config)
    harm = variant.notes["mixed_dim"]["harm"]
    for name, by_width in harm.items():
        widths = list(by_width)
        assert widths[0] == 8 and by_width[8] == 0.0
        assert all(by_width[a] <= by_width[b] + 1e-9 for a, b in zip(widths, widths[1:])), (name, by_width)
    assert harm["t_item_id"][1] > 0 and variant.notes["precisions"] == {n: "fp32" for n in harm}


@pytest.mark.parametrize("raw, fragment", [
    ({"steps": ["mixed_dim"]}, "compress.variants[0].mixed_dim.budget_ratio: required"),
    ({"steps": ["mixed_dim"], "mixed_dim": {"budget_ratio": 0.5}}, "mixed_dim.budget_ratio: must be >= 1"),
    ({"steps": ["mixed_dim"], "mixed_dim": {"budget_ratio": 4.0, "dims": [0]}},
     "mixed_dim.dims: must list widths >= 1"),
    ({"steps": ["factorize", "mixed_dim"], "factorize": {"rank": 2}, "mixed_dim": {"budget_ratio": 4.0}},
     "steps: mixed_dim factorizes itself"),
    ({"steps": ["prune", "mixed_dim"], "mixed_dim": {"budget_ratio": 4.0}}, "steps: mixed_dim must come before prune"),
    ({"steps": ["mixed_dim"], "mixed_dim": {"budget_ratio": 4.0, "sensitivity": "loss"}}, "mixed_dim.sensitivity"),
])
def test_bad_settings_are_one_line(raw, fragment):
    with pytest.raises(ConfigError) as e:
        _config(raw)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_an_unreachable_budget_is_one_line(tiny_exported, tiny_dataset):
    exported = tiny_exported("dlrm")
    config = _config({"steps": ["mixed_dim", "quantize"], "mixed_dim": {"budget_ratio": 500.0},
                      "quantize": {"default": "int8"}})
    with pytest.raises(ConfigError, match=r"^mixed_dim.budget_ratio: 500.0x cannot be met at int8; the smallest "
                                          r"choice is \d+ bytes \([\d.]+x\)$"):
        build_variant(teacher_of(exported), teacher_task(exported, tiny_dataset), config)
