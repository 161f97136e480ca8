"""/rank: the assigned variant's own model scores the candidates (equal to that model's forward on
the same rows built independently, as a TorchRec Batch); bad feature keys, ids or sizes are a
one-line 422 and no decision is logged."""
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torchrec.datasets.utils import Batch

from bandit.decision import DecisionRule
from bandit.experiment import Experiment, ExperimentSpec
from bandit.sqlite_store import SQLiteStore
from recsys.app.rank import WARM_CALLS, WARM_SIZES, VariantRanker
from recsys.app.service import Limits, create_app
from recsys.data.jagged import Jagged, to_kjt
from recsys.data.schema import Schema, SparseFeature
from recsys.models.registry import build_model
from recsys.serving.scorer import ModelScorer
from simulator.serving import Arm

TOKEN = "rank-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA = Schema(dense=("hour", "load"), sparse=(
    SparseFeature("user_id", 50, "user"), SparseFeature("user_tags", 20, "user", max_ids=3),
    SparseFeature("item_id", 40, "item"), SparseFeature("device", 3, "context")))


@pytest.fixture(scope="module")
def scorers():
    torch.manual_seed(0)
    dlrm = build_model("dlrm", SCHEMA, {"embedding_dim": 8, "dense_arch": [8], "over_arch": [8, 1]},
                       torch.device("cpu"))
    logistic = build_model("logistic", SCHEMA, {}, torch.device("cpu"))
    return {"dlrm": ModelScorer(dlrm), "logistic": ModelScorer(logistic)}


@pytest.fixture
def service(tmp_path, scorers):
    spec = ExperimentSpec("exp", ("dlrm", "logistic"), rule=DecisionRule(control="dlrm"))
    exp = Experiment(spec, SQLiteStore(tmp_path / "s.db"))
    ranker = VariantRanker([Arm(n, s) for n, s in scorers.items()], SCHEMA)
    return TestClient(create_app({"exp": exp}, TOKEN, Limits(max_candidates=64), ranker)), exp


def _request(n=30, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"unit_id": "user-1", "dense": [0.5, -1.0], "k": k,
            "features": {"user_id": [7], "user_tags": [1, 4], "device": [2]},
            "candidates": [{"item_id": f"item-{i}", "features": {"item_id": [int(i)]}}
                           for i in rng.choice(40, size=n, replace=False)]}


def _forward(scorer, req):
    """The model's own forward on one row per candidate (user and context ids repeated)."""
    n = len(req["candidates"])
    rows = {k: [req["features"][k]] * n for k in req["features"]}
    rows["item_id"] = [c["features"]["item_id"] for c in req["candidates"]]
    columns = [Jagged.from_lengths(np.array([len(r) for r in rows[k]]), np.concatenate(rows[k])) for k in SCHEMA.keys()]
    batch = Batch(torch.tensor([req["dense"]] * n, dtype=torch.float32), to_kjt(SCHEMA.keys(), columns, n),
                  torch.zeros(n))
    return scorer.score(batch).numpy()


def test_rank_scores_with_the_assigned_variants_own_model(service, scorers):
    """Scores of the variant the unit was assigned, in the order of its own forward."""
    client, exp = service
    for unit in ("user-1", "user-2", "user-3", "user-4", "user-5", "user-6"):
        req = _request() | {"unit_id": unit}
        r = client.post("/v1/experiments/exp/rank", json=req, headers=AUTH)
        assert r.status_code == 200, r.text
        out = r.json()
        expected = _forward(scorers[out["arm"]], req)
        order = np.argsort(-expected, kind="stable")[:5]
        assert [i["item_id"] for i in out["items"]] == [req["candidates"][i]["item_id"] for i in order]
        np.testing.assert_allclose([i["score"] for i in out["items"]], expected[order], rtol=1e-5, atol=1e-6)
        assert out["latency_ms"] >= out["model_ms"] > 0
        assert out["arm"] == exp.assign(unit).arm
    assert exp.served.sum() == 12


@pytest.mark.parametrize("edit, prefix", [
    (lambda r: r["features"].pop("device"), "features: missing key 'device'"),
    (lambda r: r["features"].__setitem__("age", [1]), "features: unknown key 'age'"),
    (lambda r: r["candidates"][2]["features"].__setitem__("item_id", [40]), "candidates[2].features.item_id: id 40"),
    (lambda r: r["features"].__setitem__("user_tags", [1, 2, 3, 4]), "features.user_tags: expected 1 to 3 ids"),
    (lambda r: r["features"].__setitem__("user_id", [-1]), "features.user_id: id -1 outside 0..49"),
    (lambda r: r["candidates"][4]["features"].pop("item_id"), "candidates[4].features: missing key 'item_id'"),
    (lambda r: r.__setitem__("dense", [1.0]), "dense: expected 2 values"),
    (lambda r: r.__setitem__("k", 31), "k: 31 is more than"),
    (lambda r: r.__setitem__("candidates", r["candidates"] * 3), "candidates: 90, at most 64"),
    # ids beyond int64, and several faults at once: the first named
    (lambda r: r["candidates"][3]["features"].__setitem__("item_id", [2**70]),
     f"candidates[3].features.item_id: id {2**70} outside 0..39"),
    (lambda r: r["features"].__setitem__("user_tags", [1, -2**64]), f"features.user_tags: id {-2**64} outside"),
    (lambda r: r["candidates"][5]["features"].__setitem__("age", [1]), "candidates[5].features: unknown key 'age'"),
    (lambda r: (r["candidates"][1]["features"].pop("item_id"), r["candidates"][1]["features"].__setitem__("a", [1])),
     "candidates[1].features: missing key 'item_id'"),
    (lambda r: (r["features"].__setitem__("user_tags", [1, 2, 3, 4]), r["features"].__setitem__("user_id", [99])),
     "features.user_id: id 99 outside"),  # the first fault in key order: user_id comes before user_tags
    (lambda r: r["candidates"][6]["features"].__setitem__("item_id", []), "candidates[6].features.item_id: expected 1"),
])
def test_bad_rank_request_is_refused_before_any_decision(service, edit, prefix):
    client, exp = service
    req = _request()
    edit(req)
    r = client.post("/v1/experiments/exp/rank", json=req, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"].startswith(prefix), r.text
    assert exp.served.sum() == 0 and exp.store.served("exp") == {}


@pytest.mark.parametrize("body, status, prefix", [
    ('{"unit_id": "u", "candidates": [', 400, "body: malformed JSON"),
    ({"k": 0}, 422, "k: "),
    ({"candidates": []}, 422, "candidates: "),
    ({"dense": [1.0, "x"]}, 422, "dense[1]: "),
    ({"candidates": [{"item_id": 1, "features": {"item_id": ["a"]}}]}, 422, "candidates[0].features.item_id[0]: "),
])
def test_a_body_that_is_no_rank_request_is_refused_naming_the_field(service, body, status, prefix):
    client, exp = service
    if isinstance(body, dict):
        r = client.post("/v1/experiments/exp/rank", json=_request() | body, headers=AUTH)
    else:
        r = client.post("/v1/experiments/exp/rank", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == status and r.json()["error"].startswith(prefix) and "\n" not in r.json()["error"], r.text
    assert exp.served.sum() == 0
    assert client.post("/v1/experiments/exp/rank", json=_request(), headers={}).status_code == 401  # token first


def test_the_rank_request_schema_is_in_the_openapi_document(service):
    client, _ = service
    body = client.get("/openapi.json").json()["paths"]["/v1/experiments/{exp_id}/rank"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["unit_id", "features", "candidates"] and "$ref" not in json.dumps(schema)
    assert schema["properties"]["candidates"]["items"]["properties"]["features"]["type"] == "object"


class _Counting:
    """A scorer that counts its calls (and can fail them with NaN scores)."""

    def __init__(self, inner, nan=False):
        self.inner, self.device, self.calls, self.nan = inner, inner.device, 0, nan

    def score(self, batch):
        return self.inner.score(batch)

    def score_requests(self, requests):
        self.calls += 1
        out = self.inner.score_requests(requests)
        return out * float("nan") if self.nan else out

    def embedding_bytes(self):
        return self.inner.embedding_bytes()


def _counting_service(tmp_path, scorers, nan=False):
    spec = ExperimentSpec("exp", ("dlrm", "logistic"), rule=DecisionRule(control="dlrm"))
    exp = Experiment(spec, SQLiteStore(tmp_path / "c.db"))
    counting = {n: _Counting(s, nan) for n, s in scorers.items()}
    ranker = VariantRanker([Arm(n, s) for n, s in counting.items()], SCHEMA)
    return create_app({"exp": exp}, TOKEN, Limits(), ranker), exp, counting


class _RowsOnly:
    """A scorer without a serving path: it reads Batches only (one row per candidate)."""

    def __init__(self, inner):
        self.inner, self.device = inner, inner.device

    def score(self, batch):
        assert isinstance(batch, Batch)
        return self.inner.score(batch)

    def embedding_bytes(self):
        return self.inner.embedding_bytes()


def test_a_scorer_without_a_serving_path_ranks_the_candidates_rows(tmp_path, scorers):
    """Its arm's call is chosen once (its `score` on the requests' rows), and ranks as its model."""
    spec = ExperimentSpec("exp", ("rows", "rows-too"), rule=DecisionRule(control="rows"))
    exp = Experiment(spec, SQLiteStore(tmp_path / "r.db"))
    ranker = VariantRanker([Arm(name, _RowsOnly(scorers["dlrm"])) for name in spec.arms], SCHEMA)
    client = TestClient(create_app({"exp": exp}, TOKEN, Limits(), ranker))
    req = _request(seed=3)
    out = client.post("/v1/experiments/exp/rank", json=req, headers=AUTH).json()
    expected = _forward(scorers["dlrm"], req)
    order = np.argsort(-expected, kind="stable")[:5]
    assert [i["item_id"] for i in out["items"]] == [req["candidates"][i]["item_id"] for i in order]
    np.testing.assert_allclose([i["score"] for i in out["items"]], expected[order], rtol=1e-5, atol=1e-6)


def test_every_arm_is_warmed_before_the_first_request(tmp_path, scorers):
    """The lifespan (under uvicorn: before the port opens) scores WARM_CALLS requests of each of
    WARM_SIZES candidates with every arm, and logs no decision."""
    app, exp, counting = _counting_service(tmp_path, scorers)
    assert all(s.calls == 0 for s in counting.values())
    with TestClient(app) as client:
        assert {n: s.calls for n, s in counting.items()} == {n: WARM_CALLS * len(WARM_SIZES) for n in counting}
        assert exp.store.served("exp") == {} and client.get("/readyz").status_code == 200
        assert client.post("/v1/experiments/exp/rank", json=_request(), headers=AUTH).status_code == 200
    assert sum(s.calls for s in counting.values()) == 2 * WARM_CALLS * len(WARM_SIZES) + 1


def test_a_request_whose_scoring_fails_logs_no_decision(tmp_path, scorers):
    """The decision is logged after the model has scored: a model that fails (NaN scores) is a 500
    with nothing logged."""
    app, exp, _ = _counting_service(tmp_path, scorers, nan=True)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/v1/experiments/exp/rank", json=_request(), headers=AUTH).status_code == 500
    assert exp.served.sum() == 0 and exp.store.served("exp") == {}


def test_rank_requests_are_counted_under_their_route(service):
    client, _ = service
    assert client.post("/v1/experiments/exp/rank", json=_request(), headers=AUTH).status_code == 200
    assert client.post("/v1/experiments/exp/rank", json=_request() | {"k": 0}, headers=AUTH).status_code == 422
    text = client.get("/metrics").text
    for status in ("200", "422"):
        assert f'recsys_http_requests_total{{path="/v1/experiments/{{exp_id}}/rank",status="{status}"}} 1.0' in text


