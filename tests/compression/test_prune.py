"""Pruning: pruned ids look up exact zeros through the TBE remap, kept rows are unchanged; each
importance keeps the rows it ranks highest (loss importance recomputed here by autograd)."""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torchrec import KeyedJaggedTensor

from compression.config import PruneConfig
from compression.prune import access_counts, apply_mask, keep_masks, loss_importance, prune
from compression.scorer import build_quant_ebc
from compression.tables import ebc_paths, float_tables, pack, unpack
from recsys.config_loading import from_dict
from recsys.errors import ConfigError


def _task(dataset, model):
    from recsys.train.tasks import ClickTask

    return ClickTask("dlrm", dataset, lambda device: model)


def _lookup_all(packed, table):
    """Every logical id of `table`, one per bag, through a quantized EBC."""
    n = table.num_embeddings
    qebc = build_quant_ebc([packed], torch.device("cpu"))
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=list(table.feature_names), values=torch.arange(n),
                                              lengths=torch.ones(n, dtype=torch.int32))
    return qebc(kjt).to_dict()[table.feature_names[0]]


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_pruned_ids_return_exact_zeros_and_kept_rows_match(random_model, precision):
    table = float_tables(random_model("dlrm"))["t_user_id"]
    keep = torch.rand(table.num_embeddings, generator=torch.Generator().manual_seed(0)) < 0.4
    pruned = apply_mask(table, keep)
    packed = pack(pruned, precision)
    out = _lookup_all(packed, table)
    assert torch.equal(out[~keep], torch.zeros(int((~keep).sum()), table.dim))
    expected = unpack(packed).weight  # the stored rows, decoded
    assert torch.allclose(out[keep], expected, atol=1e-6)
    if precision == "fp32":
        assert torch.equal(out[keep], table.weight[keep])
    assert pruned.weight.shape[0] == int(keep.sum())


def test_mean_fallback_row_is_looked_up_by_every_pruned_id(random_model):
    table = float_tables(random_model("dlrm"))["t_user_id"]
    keep = torch.rand(table.num_embeddings, generator=torch.Generator().manual_seed(1)) < 0.3
    pruned = apply_mask(table, keep, fallback="mean")
    out = _lookup_all(pack(pruned, "fp32"), table)
    mean = table.weight[~keep].mean(0)  # computed here from the unpruned table
    assert torch.allclose(out[~keep], mean.expand(int((~keep).sum()), -1), atol=1e-6)
    assert torch.equal(out[keep], table.weight[keep])
    assert pruned.weight.shape[0] == int(keep.sum()) + 1  # one shared row, counted in the bytes


def test_pruning_twice_composes(random_model):
    table = float_tables(random_model("dlrm"))["t_item_id"]
    first = apply_mask(table, torch.arange(table.num_embeddings) % 2 == 0)
    second = apply_mask(first, torch.arange(table.num_embeddings) % 3 == 0)
    out = _lookup_all(pack(second, "fp32"), table)
    keep = (torch.arange(table.num_embeddings) % 6) == 0
    assert torch.equal(out[keep], table.weight[keep]) and not out[~keep].any()


def test_l2_per_table_keeps_the_largest_rows(random_model):
    model = random_model("dlrm")
    tables = float_tables(model)
    out = prune(PruneConfig(method="l2", ratio=0.25), model, tables, None)
    for name, t in tables.items():
        kept = out[name].remap >= 0
        assert int(kept.sum()) == t.num_embeddings - int(0.25 * t.num_embeddings)
        norms = t.weight.norm(dim=1)
        assert norms[kept].min() >= norms[~kept].max()


def test_global_budget_uses_one_threshold():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64),
              "b": torch.tensor([10.0, 0.5], dtype=torch.float64)}
    masks = keep_masks(PruneConfig(ratio=0.5, scope="global"), scores)
    assert masks["a"].tolist() == [False, False, True, True] and masks["b"].tolist() == [True, False]


def test_ratio_zero_keeps_everything_without_remap(random_model):
    model = random_model("dlrm")
    tables = float_tables(model)
    out = prune(PruneConfig(method="l2", ratio=0.0), model, tables, None)
    assert all(t.remap is None for t in out.values())


def test_frequency_counts_the_train_split(tiny_dataset):
    from recsys.models.registry import build_model

    model = build_model("dlrm", tiny_dataset.schema, {"embedding_dim": 8, "dense_arch": [8], "over_arch": [8, 1]},
                        torch.device("cpu"))
    tables = float_tables(model)
    counts = access_counts(tiny_dataset.batches("train", 4096), tables)
    rows = tiny_dataset.num_rows("train")
    assert counts["t_user_id"].sum() == rows and counts["t_device"].sum() == rows
    out = prune(PruneConfig(method="frequency", ratio=0.5), model, tables, _task(tiny_dataset, model))
    kept = out["t_item_id"].remap >= 0
    assert counts["t_item_id"][kept].min() >= counts["t_item_id"][~kept].max()


def _loss_importance_by_hand(model, dataset, batch_size: int, batches: int) -> dict[str, torch.Tensor]:
    """Per row |sum over the first `batches` full train batches of dBCE/dw . w|, by autograd on the
    float model itself."""
    weights = {name: bag.weight for ebc in ebc_paths(model).values() for name, bag in ebc.embedding_bags.items()}
    total = {n: torch.zeros_like(w) for n, w in weights.items()}
    for batch in itertools.islice(dataset.batches("train", batch_size, drop_last=True), batches):
        loss = F.binary_cross_entropy_with_logits(model.score(batch), batch.labels.float())
        for name, grad in zip(weights, torch.autograd.grad(loss, list(weights.values()))):
            total[name] += grad
    return {n: (total[n] * w.detach()).sum(1).abs().double() for n, w in weights.items()}


def _check_keeps_the_most_important(pruned, scores, ratio):
    """Each table keeps its top (1 - ratio) rows by `scores`: the right count, and no pruned row
    scores more than a kept one."""
    for name, table in pruned.items():
        kept = table.remap >= 0
        assert int(kept.sum()) == table.num_embeddings - int(ratio * table.num_embeddings)
        assert scores[name][kept].min() >= scores[name][~kept].max() - 1e-12


def test_loss_importance_keeps_the_rows_whose_loss_change_is_largest(tiny_dataset):
    from recsys.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("dlrm", tiny_dataset.schema, {"embedding_dim": 8, "dense_arch": [8], "over_arch": [8, 1]},
                        torch.device("cpu"))
    config = PruneConfig(method="loss", ratio=0.7, max_batches=3)
    by_hand = _loss_importance_by_hand(model, tiny_dataset, 256, 3)
    computed = loss_importance(_task(tiny_dataset, model), model, 256, 3)
    assert computed.keys() == by_hand.keys()
    for name in by_hand:
        assert torch.allclose(computed[name], by_hand[name], rtol=1e-5, atol=1e-12)
    pruned = prune(config, model, float_tables(model), _task(tiny_dataset, model), batch_size=256)
    _check_keeps_the_most_important(pruned, by_hand, 0.7)
    items = by_hand["t_item_id"]
    kept = pruned["t_item_id"].remap >= 0
    assert items[kept].min() > items[~kept].max() * 1.001  # a strict gap: the kept set is the top 60

    # Zero the 10 most important item rows: their importance |g . w| becomes 0, so they are pruned now.
    top = torch.argsort(items, descending=True)[:10]
    changed = copy.deepcopy(model)
    with torch.no_grad():
        ebc_paths(changed)["model.sparse_arch.embedding_bag_collection"].embedding_bags["t_item_id"].weight[top] = 0.0
    repruned = prune(config, changed, float_tables(changed), _task(tiny_dataset, changed), batch_size=256)
    _check_keeps_the_most_important(repruned, _loss_importance_by_hand(changed, tiny_dataset, 256, 3), 0.7)
    now_kept = repruned["t_item_id"].remap >= 0
    assert not now_kept[top].any() and kept[top].all() and int(now_kept.sum()) == int(kept.sum())


@pytest.mark.parametrize("raw, fragment", [
    ({"ratio": 1.0}, "prune.ratio: must be in [0, 1)"),
    ({"ratio": -0.1}, "prune.ratio: must be in [0, 1)"),
    ({"tables": {"t_user_id": 1.5}}, "prune.tables.t_user_id: must be in [0, 1)"),
    ({"method": "random"}, "prune.method:"),
])
def test_bad_prune_configs_are_one_line(raw, fragment):
    with pytest.raises(ConfigError) as e:
        from_dict(PruneConfig, raw, "prune")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_unknown_table_is_named(random_model):
    model = random_model("dlrm")
    with pytest.raises(ConfigError, match=r"^prune.tables.t_nope: no such table"):
        prune(PruneConfig(method="l2", tables={"t_nope": 0.5}), model, float_tables(model), None)


@pytest.mark.parametrize("rows,dim,precision,ratio,fallback", [
    (1000, 16, "int4", 0.3, "mean"), (1000, 16, "int4", 0.5, "mean"), (100, 16, "int4", 0.5, "zero"),
    (8, 16, "int4", 0.5, "mean"), (5000, 8, "int8", 0.2, "zero"), (300, 16, "fp32", 0.1, "mean"),
    (2000, 16, "int2", 0.45, "zero"), (50, 16, "int8", 0.0, "mean")])
def test_pruning_saves_what_the_real_tbes_hold_less(rows, dim, precision, ratio, fallback):
    """pruning_saves (what `recsys check` refuses by) against the bytes FBGEMM's TBEs really hold
    (weights + remap) for the table pruned by `prune`'s own masks, and not pruned."""
    from compression.prune import pruning_saves
    from compression.tables import FloatTable
    from recsys.serving.size import tbe_bytes

    weight = torch.randn(rows, dim, generator=torch.Generator().manual_seed(rows))
    table = FloatTable("", "t", ("f",), "SUM", rows, weight)
    scores = {"t": torch.rand(rows, generator=torch.Generator().manual_seed(1)).double()}
    pruned = apply_mask(table, keep_masks(PruneConfig(ratio=ratio), scores)["t"], fallback)
    held = [tbe_bytes(build_quant_ebc([pack(t, precision)], torch.device("cpu"))) for t in (table, pruned)]
    assert pruning_saves(rows, dim, precision, ratio, fallback) == held[0] - held[1]
