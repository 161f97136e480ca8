"""Retrieval candidates from a real two-tower model, trained on the tiny config through the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.app.cli import main
from recsys.data.config import SyntheticConfig
from recsys.data.world import World
from recsys.serving.export import load_model
from simulator.config import SimulatorConfig
from simulator.environment import Environment
from simulator.experiment import run_experiment
from simulator.oracle import WorldScorer
from simulator.serving import Arm

# the tiny config's world (tests/conftest.py TINY): the world the two-tower model trained on
TINY_SEED = 3
TINY_WORLD = World.generate(SyntheticConfig(num_users=300, num_items=200, num_rows=24000), TINY_SEED)


@pytest.fixture(scope="module")
def two_tower(tmp_path_factory) -> torch.nn.Module:
    from tests.conftest import TINY
    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "tiny.toml"
    path.write_text(TINY.format(name="tiny", out=folder / "runs", cache=folder / "cache"))
    assert main(["run", str(path), "--set", "dlrm.enabled=false", "--set", "baselines.popularity=false",
                 "--set", "baselines.logistic=false"]) == 0
    return load_model(folder / "runs" / "tiny" / "two_tower" / "model").model


def test_retrieval_candidates_are_the_model_top_c(two_tower):
    config = SimulatorConfig(num_requests=2000, batch_requests=1000, candidates=20, slate_size=5,
                             candidate_source="retrieval", retrieval_model="given")
    env = Environment.build(config, TINY_WORLD, TINY_SEED, retrieval_model=two_tower)
    requests, _ = env.requests()
    c = requests.candidates
    assert c.shape == (1000, 20) and all(len(set(row)) == 20 for row in c)
    w = env.world.world
    with torch.no_grad():
        users = two_tower.embed(w.user_table().kjt(), "user")[torch.from_numpy(requests.users)]
        items = two_tower.embed(w.item_table().kjt(), "item")
    scores = (users @ items.T).numpy()
    worst_kept = np.take_along_axis(scores, c, axis=1).min(axis=1)
    assert np.all(np.sort(scores, axis=1)[:, -21] <= worst_kept + 1e-5)  # no better item left out
    # the trained model retrieves items users like more than uniformly random candidates
    rng = np.random.default_rng(0)
    random_items = np.argsort(rng.random((len(c), w.num_items)), axis=1)[:, :20]
    truth = lambda items: env.world.attraction(requests.users, items, requests.dense, requests.t).mean()  # noqa: E731
    assert truth(c) > truth(random_items)
    result = run_experiment(Environment.build(config, TINY_WORLD, TINY_SEED, retrieval_model=two_tower),
                            [Arm("exact", WorldScorer(w))])
    assert result.requests == 2000 and result.impressions > 0


def test_a_retrieval_model_that_is_not_a_two_tower_is_refused(tmp_path, capsys):
    """`recsys simulate` with candidate_source = "retrieval" pointing at a logistic model's folder."""
    import json

    from recsys.models.registry import build_model, schema_to_dict
    from tests.conftest import TINY

    folder = tmp_path / "runs" / "tiny" / "logistic" / "model"
    folder.mkdir(parents=True)
    schema = TINY_WORLD.schema()
    torch.save(build_model("logistic", schema, {}, torch.device("cpu")).state_dict(), folder / "model.pt")
    (folder / "model.json").write_text(json.dumps({"kind": "logistic", "schema": schema_to_dict(schema), "config": {}}))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(name="tiny", out=tmp_path / "runs", cache=tmp_path / "cache")
                    + f'\n[simulator]\ncandidate_source = "retrieval"\nretrieval_model = "{folder}"\n')
    assert main(["simulate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: simulator.retrieval_model: {folder} holds a logistic model, not a two-tower\n", err
