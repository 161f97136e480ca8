"""The variant store: round trips exactly, loads weights-only, refuses corrupt folders in one line."""
from __future__ import annotations

import json
import re

import pytest
import torch

from compression.config import PruneConfig, QuantizeConfig, VariantConfig
from compression.recipe import Teacher, build_variant
from compression.variant import MeasuredVariant, ModelSpec, load_variant, read_manifest, save_variants
from recsys.errors import CheckpointError
from tests.compression.conftest import MODEL_CONFIGS, SCHEMA, random_batch


def _variant(random_model, kind):
    model = random_model(kind)
    teacher = Teacher(model, ModelSpec(kind, SCHEMA, MODEL_CONFIGS[kind]))
    config = VariantConfig(name="mix", steps=("prune", "quantize"), prune=PruneConfig(method="l2", ratio=0.3),
                           quantize=QuantizeConfig(default="int4", tables={"t_user_id": "int2", "t_item_tags": "fp16"}))
    return build_variant(teacher, None, config)


def _save(folder, variant, metrics):
    return save_variants(folder, [MeasuredVariant(variant, metrics, {})])


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_round_trip_gives_identical_scores(tmp_path, random_model, kind):
    variant = _variant(random_model, kind)
    [manifest] = _save(tmp_path / "set", variant, {"auc": 0.5})
    loaded = load_variant(tmp_path / "set" / "mix")
    batch = random_batch(SCHEMA, 50, seed=4)
    assert torch.equal(loaded.score(batch), variant.scorer().score(batch))
    assert loaded.embedding_bytes() == manifest["size"]["total"] == loaded.runtime_bytes()
    assert manifest["tables"]["t_user_id"]["precision"] == "int2" and manifest["tables"]["t_user_id"]["pruned"]
    state = torch.load(tmp_path / "set" / "mix" / "weights.pt", weights_only=True)
    assert all(type(v) is torch.Tensor for v in state.values())
    assert set(manifest["provenance"]) >= {"versions", "device", "git"}
    assert [p.name for p in tmp_path.iterdir()] == ["set"] and [p.name for p in (tmp_path / "set").iterdir()] == ["mix"]


def test_corrupt_manifest_is_one_line(tmp_path, random_model):
    _save(tmp_path / "set", _variant(random_model, "dlrm"), {})
    (tmp_path / "set" / "mix" / "manifest.json").write_text('{"format": 1, "name": ')
    with pytest.raises(CheckpointError) as e:
        load_variant(tmp_path / "set" / "mix")
    assert "manifest.json: not a readable variant manifest" in str(e.value) and "\n" not in str(e.value)


def test_truncated_weights_are_one_line(tmp_path, random_model):
    _save(tmp_path / "set", _variant(random_model, "dlrm"), {})
    path = tmp_path / "set" / "mix" / "weights.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as e:
        load_variant(tmp_path / "set" / "mix")
    assert "weights.pt: checksum does not match" in str(e.value) and "\n" not in str(e.value)


def test_manifest_not_matching_weights_is_one_line(tmp_path, random_model):
    _save(tmp_path / "set", _variant(random_model, "dlrm"), {})
    manifest = read_manifest(tmp_path / "set" / "mix")
    manifest["tables"]["t_item_id"]["dim"] = 32
    (tmp_path / "set" / "mix" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as e:
        load_variant(tmp_path / "set" / "mix")
    assert "\n" not in str(e.value)


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="manifest.json: not a readable variant manifest"):
        load_variant(tmp_path / "nope")


def test_failed_save_leaves_nothing_and_keeps_the_old_folder(tmp_path, random_model, monkeypatch):
    variant = _variant(random_model, "dlrm")
    _save(tmp_path / "set", variant, {"auc": 0.1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        _save(tmp_path / "set", variant, {"auc": 0.2})
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
    assert read_manifest(tmp_path / "set" / "mix")["metrics"] == {"auc": 0.1}


def _edit_manifest(folder, edit):
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


BROKEN_MANIFESTS = {
    "weights_sha256 missing": (lambda m: m.pop("weights_sha256"), "'weights_sha256' is missing"),
    "tables not an object": (lambda m: m.update(tables=[1]), "'tables' must be object, not list"),
    "kind a number": (lambda m: m.update(kind=3), "'kind' must be string or null, not integer"),
    "size.fp32_total missing": (lambda m: m["size"].pop("fp32_total"), "'size.fp32_total' is missing"),
    "table dim a string": (lambda m: m["tables"]["t_item_id"].update(dim="16"),
                           "'tables.t_item_id.dim' must be integer, not string"),
    "table rows a boolean": (lambda m: m["tables"]["t_item_id"].update(rows=True),
                             "'tables.t_item_id.rows' must be integer, not boolean"),
    "table not an object": (lambda m: m["tables"].update(t_item_id=None),
                            "'tables.t_item_id' must be object, not null"),
    "metrics missing": (lambda m: m.pop("metrics"), "'metrics' is missing"),
    "size.total a string": (lambda m: m["size"].update(total="1"), "'size.total' must be integer, not string"),
}


@pytest.mark.parametrize("case", BROKEN_MANIFESTS)
def test_a_manifest_with_a_missing_or_mistyped_key_is_one_line_naming_it(tmp_path, random_model, case):
    _save(tmp_path / "set", _variant(random_model, "dlrm"), {})
    folder = tmp_path / "set" / "mix"
    edit, expected = BROKEN_MANIFESTS[case]
    _edit_manifest(folder, edit)
    with pytest.raises(CheckpointError) as e:
        load_variant(folder)
    assert str(e.value) == f"{folder / 'manifest.json'}: {expected}"
    if case in ("metrics missing", "size.total a string"):  # what listing a variant reads, too
        with pytest.raises(CheckpointError, match="^" + re.escape(str(e.value)) + "$"):
            read_manifest(folder)


def test_pickled_weights_with_a_forged_checksum_are_refused_without_advice_to_unpickle(tmp_path, random_model):
    import io

    from recsys.integrity import sha256

    _save(tmp_path / "set", _variant(random_model, "dlrm"), {})
    folder = tmp_path / "set" / "mix"
    buf = io.BytesIO()
    torch.save({"dense.x": torch.zeros(1), "note": io.StringIO("a pickled object")}, buf)
    (folder / "weights.pt").write_bytes(buf.getvalue())
    _edit_manifest(folder, lambda m: m.update(weights_sha256=sha256(folder / "weights.pt")))
    with pytest.raises(CheckpointError) as e:
        load_variant(folder)
    assert str(e.value) == f"{folder / 'weights.pt'}: not a weights-only file (it holds pickled objects); refused"


def test_a_flipped_bit_in_the_weights_is_one_line_naming_them(tmp_path, random_model):
    _save(tmp_path / "set", _variant(random_model, "dlrm"), {})
    path = tmp_path / "set" / "mix" / "weights.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_variant(tmp_path / "set" / "mix")
    assert str(e.value).startswith(f"{path}: checksum does not match") and "\n" not in str(e.value)
