"""An exported model folder is checked before it is used: model.pt against the checksum in
model.json (a flipped bit is one line naming model.pt, so nothing, e.g. `recsys compress`, is built
from a corrupt model), a pickled model.pt is refused, and a broken model.json is one line naming
the file and the key."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from recsys.errors import CheckpointError
from recsys.integrity import sha256
from recsys.models.registry import schema_to_dict
from recsys.serving.export import export_model, load_model
from tests.train.conftest import MODEL

META = {"test": {"auc": 0.5}, "provenance": {"git": "x"}}


@pytest.fixture(scope="module")
def exported(trainer, tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A trained tiny DLRM exported to a folder, and its weights as trained."""
    out = tmp_path_factory.mktemp("export")
    result = trainer(out / "run", epochs=1)
    config = {"embedding_dim": MODEL.embedding_dim, "dense_arch": list(MODEL.dense_arch),
              "over_arch": list(MODEL.over_arch)}
    export_model(result.model, "dlrm", trainer.dataset.schema, config, out / "model", META)
    return out / "model", {k: v.clone() for k, v in torch.load(out / "model" / "model.pt").items()}


@pytest.fixture
def folder(exported, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported[0], tmp_path / "model"))


def _edit(folder: Path, edit) -> None:
    info = json.loads((folder / "model.json").read_text())
    edit(info)
    (folder / "model.json").write_text(json.dumps(info))


def test_model_json_records_the_checksum_and_loading_round_trips(exported, folder: Path) -> None:
    info = json.loads((folder / "model.json").read_text())
    assert info["model_sha256"] == sha256(folder / "model.pt")
    loaded = load_model(folder)
    assert loaded.kind == "dlrm" and loaded.meta["test"] == META["test"]
    state = loaded.model.state_dict()
    assert state.keys() == exported[1].keys() and all(torch.equal(state[k], exported[1][k]) for k in state)


@pytest.mark.parametrize("where", [0.25, 0.5, 0.9])
def test_a_flipped_bit_in_model_pt_is_one_line_naming_it(folder: Path, where: float) -> None:
    path = folder / "model.pt"
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_model(folder)
    assert str(e.value) == (f"{path}: checksum does not match the one recorded when it was written "
                            "(corrupt, truncated or modified)")


def test_a_pickled_model_pt_is_refused_without_advice_to_unpickle(folder: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1), "note": io.StringIO("a pickled object")}, buf)
    (folder / "model.pt").write_bytes(buf.getvalue())
    _edit(folder, lambda info: info.update(model_sha256=sha256(folder / "model.pt")))
    with pytest.raises(CheckpointError) as e:
        load_model(folder)
    assert str(e.value) == f"{folder / 'model.pt'}: not a weights-only file (it holds pickled objects); refused"


NO_MODEL = "'kind', 'schema' and 'config' do not make a model ("
BROKEN = {
    "not json": ("{", "not readable JSON ("),
    "a list": ("[1, 2]", "holds a JSON list, expected an object"),
    "kind missing": (lambda i: i.pop("kind"), "'kind' is missing"),
    "kind a number": (lambda i: i.update(kind=1), "'kind' must be string, not integer"),
    "config a list": (lambda i: i.update(config=[]), "'config' must be object, not list"),
    "schema a string": (lambda i: i.update(schema="x"), "'schema' must be object, not string"),
    "schema without sparse": (lambda i: i["schema"].pop("sparse"), "'schema' is not a feature schema ("),
    "unknown kind": (lambda i: i.update(kind="gbdt"), NO_MODEL),
    "config key unknown": (lambda i: i["config"].update(depth=3), NO_MODEL),
    "checksum missing": (lambda i: i.pop("model_sha256"), "records no checksum of model.pt"),
    "checksum a number": (lambda i: i.update(model_sha256=5), "'model_sha256' must be string, not integer"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_model_json_is_one_line_naming_it_and_the_fault(folder: Path, case: str) -> None:
    edit, expected = BROKEN[case]
    if isinstance(edit, str):
        (folder / "model.json").write_text(edit)
    else:
        _edit(folder, edit)
    with pytest.raises(CheckpointError) as e:
        load_model(folder)
    message = str(e.value)
    assert message.startswith(f"{folder / 'model.json'}: {expected}") and "\n" not in message


def test_model_pt_of_another_architecture_is_named(folder: Path, trainer) -> None:
    _edit(folder, lambda i: i["config"].update(over_arch=[16, 1]))
    with pytest.raises(CheckpointError, match=r"model.pt: does not match model.json"):
        load_model(folder)


def test_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope: no exported model there$"):
        load_model(tmp_path / "nope")


def test_schema_round_trips_through_model_json(exported, trainer) -> None:
    info = json.loads((exported[0] / "model.json").read_text())
    assert info["schema"] == schema_to_dict(trainer.dataset.schema)
