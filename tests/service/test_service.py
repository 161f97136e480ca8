"""The HTTP service in process (FastAPI TestClient): the API's round trips, and one test per kind
of bad input: a 4xx with a one-line JSON error naming the field, and the state unchanged."""
import json
import time

import pytest
from fastapi.testclient import TestClient

from bandit.client import LocalAssigner
from bandit.decision import DecisionRule
from bandit.experiment import Experiment, ExperimentSpec
from bandit.sqlite_store import SQLiteStore
from recsys.app.service import Limits, create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def service(tmp_path):
    spec = ExperimentSpec("exp", ("fp32", "int8", "int4"),  # the default policy; its rule reads no latency
                          rule=DecisionRule(control="fp32", min_requests=10), recompute_every=50)
    exp = Experiment(spec, SQLiteStore(tmp_path / "store.db"))
    client = TestClient(create_app({"exp": exp}, TOKEN, Limits(max_body_bytes=20_000, max_events=50)))
    return client, exp


def _assign(client, unit):
    r = client.post("/v1/experiments/exp/assign", json={"unit_id": unit}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def _state(exp):
    """Everything a refused request must leave as it was."""
    rows = exp.store.replay("exp")
    return (json.dumps(exp.snapshot()), exp.totals.n.tolist(), exp.served.tolist(), [len(b) for b in rows],
            exp.policy.pulls.tolist())


def test_assign_feedback_summary_weights_and_metrics(service):
    client, exp = service
    decisions = [_assign(client, f"user-{i}") for i in range(120)]
    assert _assign(client, "user-7")["arm"] == decisions[7]["arm"]  # sticky
    events = [{"event_id": f"ev-{i}", "decision_id": d["decision_id"], "reward": float(d["arm"] != "int4"),
               "latency_ms": 5.0 + i % 7, "arm": d["arm"]} for i, d in enumerate(decisions)]
    for j in range(0, 120, 40):
        r = client.post("/v1/experiments/exp/feedback", json={"events": events[j:j + 40]}, headers=AUTH)
        assert r.json() == {"accepted": 40, "duplicates": 0}
    again = client.post("/v1/experiments/exp/feedback", json={"events": events[:40]}, headers=AUTH)
    assert again.json() == {"accepted": 0, "duplicates": 40}
    summary = client.get("/v1/experiments/exp").json()
    assert sum(a["observations"] for a in summary["arms"]) == 120 and summary["weights_version"] > 1
    assert {a["arm"] for a in summary["arms"]} == {"fp32", "int8", "int4"} and "srm" in summary
    assert summary["decision"]["leader"] in ("fp32", "int8")
    snap = client.get("/v1/experiments/exp/weights").json()
    local = LocalAssigner.from_snapshot(snap)
    for i in range(200):
        server = _assign(client, f"other-{i}")
        assert local.assign(f"other-{i}") == (server["arm"], server["propensity"])
    text = client.get("/metrics").text
    assert 'recsys_feedback_events_total{experiment="exp"} 120.0' in text
    assert 'recsys_http_requests_total{path="/v1/experiments/{exp_id}/assign",status="200"}' in text
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").json()["experiments"] == ["exp"]
    assert client.get("/openapi.json").json()["paths"]["/v1/experiments/{exp_id}/feedback"]


def _feedback(decision_id, **kw):
    return {"events": [{"event_id": "e-new", "decision_id": decision_id, "reward": 1.0, **kw}]}


CASES = [
    # (name, method, path, body or raw text, headers, status, error prefix)
    ("malformed json", "post", "/v1/experiments/exp/feedback", '{"events": [', AUTH, 400, "body: malformed JSON"),
    ("unknown experiment", "post", "/v1/experiments/nope/assign", {"unit_id": "u"}, AUTH, 404, "experiment: "),
    ("unknown experiment summary", "get", "/v1/experiments/nope", None, {}, 404, "experiment: "),
    ("unknown arm", "post", "/v1/experiments/exp/feedback", "ARM", AUTH, 422, "events[0].arm: unknown arm"),
    ("wrong arm", "post", "/v1/experiments/exp/feedback", "WRONGARM", AUTH, 422, "events[0].arm: decision"),
    ("unknown decision id", "post", "/v1/experiments/exp/feedback", _feedback("nope"), AUTH, 422,
     "events[0].decision_id: unknown decision id"),
    ("nan reward", "post", "/v1/experiments/exp/feedback", "NAN", AUTH, 422, "events[0].reward: "),
    ("inf reward", "post", "/v1/experiments/exp/feedback", "INF", AUTH, 422, "events[0].reward: "),
    ("reward out of range", "post", "/v1/experiments/exp/feedback", "RANGE", AUTH, 422, "events[0].reward: "),
    ("string reward", "post", "/v1/experiments/exp/feedback", "STRING", AUTH, 422, "events[0].reward: "),
    ("negative latency", "post", "/v1/experiments/exp/feedback", "LATENCY", AUTH, 422, "events[0].latency_ms: "),
    ("missing field", "post", "/v1/experiments/exp/feedback", {"events": [{"event_id": "x"}]}, AUTH, 422,
     "events[0].decision_id: "),
    ("oversized batch", "post", "/v1/experiments/exp/feedback", "BATCH", AUTH, 422, "events: 51 events"),
    ("oversized body", "post", "/v1/experiments/exp/feedback", "BODY", AUTH, 413, "body: larger than"),
    ("empty unit id", "post", "/v1/experiments/exp/assign", {"unit_id": ""}, AUTH, 422, "unit_id: "),
    ("unit id with NUL", "post", "/v1/experiments/exp/assign", {"unit_id": "a\0b"}, AUTH, 422, "unit_id: "),
    ("unit id too long", "post", "/v1/experiments/exp/assign", {"unit_id": "u" * 257}, AUTH, 422, "unit_id: "),
    ("unit id a number", "post", "/v1/experiments/exp/assign", {"unit_id": 7}, AUTH, 422, "unit_id: "),
    ("malformed assign", "post", "/v1/experiments/exp/assign", '{"unit_id": "u"', AUTH, 400, "body: malformed JSON"),
    ("wrong token", "post", "/v1/experiments/exp/feedback", "GOOD", {"Authorization": "Bearer nope"}, 401,
     "authorization: "),
    ("no token", "post", "/v1/experiments/exp/assign", {"unit_id": "u"}, {}, 401, "authorization: "),
]


def _body(kind, decision):
    d = decision["decision_id"]
    raw = {
        "ARM": _feedback(d, arm="fp16"), "WRONGARM": _feedback(d, arm="int4" if decision["arm"] != "int4" else "fp32"),
        "RANGE": _feedback(d, reward=1.5), "STRING": _feedback(d, reward="a lot"),
        "LATENCY": _feedback(d, latency_ms=-3.0), "GOOD": _feedback(d),
        "BATCH": {"events": [{"event_id": f"b{i}", "decision_id": d, "reward": 1.0} for i in range(51)]},
        "BODY": {"events": [{"event_id": "x" * 100, "decision_id": d, "reward": 1.0}] * 200},
    }
    if kind in ("NAN", "INF"):
        return json.dumps(_feedback(d)).replace("1.0", "NaN" if kind == "NAN" else "Infinity")
    return raw.get(kind, kind)


@pytest.mark.parametrize("name, method, path, body, headers, status, prefix", CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_a_one_line_4xx_naming_the_field_and_changes_nothing(service, name, method, path, body,
                                                                            headers, status, prefix):
    client, exp = service
    decision = _assign(client, "someone")
    first = {"events": [{"event_id": "e-0", "decision_id": _assign(client, "first")["decision_id"], "reward": 0.0}]}
    assert client.post("/v1/experiments/exp/feedback", json=first, headers=AUTH).status_code == 200
    before = _state(exp)
    if isinstance(body, str) and body.isupper():
        body = _body(body, decision)
    kwargs = {"headers": headers}
    if isinstance(body, str):
        kwargs["content"] = body
        kwargs["headers"] = {**headers, "Content-Type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error.startswith(prefix) and "\n" not in error, error
    assert _state(exp) == before
    fine = client.post("/v1/experiments/exp/feedback", json=_feedback(decision["decision_id"]), headers=AUTH)
    assert fine.json() == {"accepted": 1, "duplicates": 0}


def test_client_side_decisions_reported_as_exposures_take_feedback(service):
    client, exp = service
    local = LocalAssigner.from_snapshot(client.get("/v1/experiments/exp/weights").json())
    decisions = [_assign(client, f"user-{i}") for i in range(60)]
    for part in (decisions[:30], decisions[30:]):
        assert client.post("/v1/experiments/exp/feedback", headers=AUTH, json={"events": [
            {"event_id": f"ev-{d['decision_id']}", "decision_id": d["decision_id"], "reward": float(d["arm"] == "int4")}
            for d in part]}).status_code == 200
    assert exp.version > local.version  # the client reports decisions made with an older snapshot
    units = [f"web-{i}" for i in range(30)]
    body = {"exposures": [{"decision_id": f"c-{u}", "unit_id": u, "weights_version": local.version} for u in units]}
    assert client.post("/v1/experiments/exp/exposures", json=body, headers=AUTH).json() == {"accepted": 30,
                                                                                          "duplicates": 0}
    assert client.post("/v1/experiments/exp/exposures", json=body, headers=AUTH).json()["duplicates"] == 30
    stored = exp.store.decisions("exp", [f"c-{u}" for u in units])
    assert [exp.spec.arms[stored[f"c-{u}"].arm] for u in units] == [local.assign(u)[0] for u in units]
    assert [stored[f"c-{u}"].propensity for u in units] == [local.assign(u)[1] for u in units]
    events = {"events": [{"event_id": f"cev-{u}", "decision_id": f"c-{u}", "reward": 0.0} for u in units]}
    assert client.post("/v1/experiments/exp/feedback", json=events, headers=AUTH).json()["accepted"] == 30
    assert exp.totals.n.sum() == 90 and exp.served.sum() == 90


@pytest.mark.parametrize("exposure, status, prefix", [
    ({"decision_id": "c-1", "unit_id": "u", "weights_version": 99}, 422, "exposures[0].weights_version: unknown"),
    ({"decision_id": "c 1", "unit_id": "u", "weights_version": 1}, 422, "exposures[0].decision_id: "),
    ({"decision_id": "c-1", "unit_id": "", "weights_version": 1}, 422, "exposures[0].unit_id: "),
    ({"decision_id": "taken", "unit_id": "someone-else", "weights_version": 1}, 409, "exposures[0].decision_id: "),
])
def test_bad_exposure_is_refused_and_nothing_logged(service, exposure, status, prefix):
    client, exp = service
    first = {"decision_id": "taken", "unit_id": "u0", "weights_version": 1}
    assert client.post("/v1/experiments/exp/exposures", json={"exposures": [first]}, headers=AUTH).status_code == 200
    before = _state(exp)
    r = client.post("/v1/experiments/exp/exposures", json={"exposures": [exposure]}, headers=AUTH)
    assert r.status_code == status and r.json()["error"].startswith(prefix), r.text
    assert _state(exp) == before and exp.store.decisions("exp", ["c-1", "c 1"]) == {}


def test_time_based_recompute_runs_in_the_background_not_on_assign(tmp_path):
    spec = ExperimentSpec("exp", ("fp32", "int8"), rule=DecisionRule(control="fp32"),
                          recompute_every=10_000, recompute_seconds=3.0)
    t0 = time.monotonic()
    exp = Experiment(spec, SQLiteStore(tmp_path / "store.db"))
    decisions = [exp.assign(f"u{i}") for i in range(40)]
    events = [{"event_id": f"e{i}", "decision_id": d.decision_id, "reward": float(d.arm == "fp32")}
              for i, d in enumerate(decisions)]
    with TestClient(create_app({"exp": exp}, TOKEN)) as client:  # the lifespan (background task) runs
        assert client.post("/v1/experiments/exp/feedback", json={"events": events}, headers=AUTH).status_code == 200
        version = exp.version  # read before the clock: a pause between the two cannot fail the check
        if time.monotonic() - t0 < 2.5:  # 40 events of 10,000 in under 3 s: not due yet
            assert version == 1
        while exp.version == 1 and time.monotonic() - t0 < 10:
            before = exp.version  # the background task may move it during the call: the answer is one of the two
            answered = _assign(client, f"x{time.monotonic()}")["weights_version"]
            assert before <= answered <= exp.version
            time.sleep(0.05)
        assert exp.version == 2  # with no further feedback: the background task did it
        assert _assign(client, "later")["weights_version"] == 2


def test_assign_answers_alike_on_its_fast_path_and_through_the_route(service):
    """A body of exactly {"unit_id"} is answered in front of FastAPI; one with another key goes
    through the route: the same unit gets the same arm, propensity and version either way, each
    decision is logged once and counted in the route's metrics."""
    client, exp = service
    for i in range(40):
        fast = _assign(client, f"unit-{i}")
        r = client.post("/v1/experiments/exp/assign", json={"unit_id": f"unit-{i}", "context": {"page": "home"}},
                        headers=AUTH)
        routed = r.json()
        assert {k: fast[k] for k in ("arm", "propensity", "weights_version")} == \
               {k: routed[k] for k in ("arm", "propensity", "weights_version")}
        assert fast["decision_id"] != routed["decision_id"]
        assert exp.store.decisions("exp", [fast["decision_id"]])[fast["decision_id"]].unit == f"unit-{i}"
    assert exp.served.sum() == 80 and sum(exp.store.served("exp").values()) == 80
    text = client.get("/metrics").text
    assert 'recsys_http_requests_total{path="/v1/experiments/{exp_id}/assign",status="200"} 80.0' in text


def test_assigns_that_arrive_together_are_written_in_one_transaction_before_any_reply(service):
    """Group commit: 50 concurrent assigns take fewer writes than requests, and every decision a
    reply names is in the store when the reply arrives."""
    import asyncio

    import httpx

    client, exp = service
    app = client.app
    writes: list[int] = []
    log = exp.store.log_decisions

    def counted(experiment, records):
        writes.append(len(records))
        log(experiment, records)

    exp.store.log_decisions = counted

    async def one(http, i):
        r = await http.post("/v1/experiments/exp/assign", json={"unit_id": f"together-{i}"}, headers=AUTH)
        d = r.json()
        assert exp.store.decisions("exp", [d["decision_id"]])[d["decision_id"]].unit == f"together-{i}"
        return d

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            return await asyncio.gather(*(one(http, i) for i in range(50)))

    replies = asyncio.run(main())
    assert len({d["decision_id"] for d in replies}) == 50 and sum(writes) == 50 and len(writes) < 50
    assert exp.served.sum() == 50
