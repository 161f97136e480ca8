"""The online experiment service: bandit.Experiment behind a versioned JSON API (FastAPI).

POST /v1/experiments/{id}/assign    {unit_id} -> {decision_id, arm, propensity, weights_version}
POST /v1/experiments/{id}/feedback  {events: [{event_id, decision_id, reward, latency_ms?, arm?}]}
POST /v1/experiments/{id}/exposures {exposures: [{decision_id, unit_id, weights_version}]}: decisions
                                    made client-side (bandit.client), arms recomputed here
POST /v1/experiments/{id}/rank      (when the service was given scorers) assign + the variant's ranking
                                    {unit_id, dense, features, candidates: [{item_id, features}], k}
GET  /v1/experiments/{id}           summary: per arm, the decision, the SRM check, the weights
GET  /v1/experiments/{id}/weights   snapshot for client-side assignment (bandit.client)
GET  /metrics /healthz /readyz      Prometheus text, liveness, readiness;  /docs: OpenAPI

POST endpoints need `Authorization: Bearer <token>` (compared in constant time). Every refusal
is a 4xx whose JSON body is one line, {"error": "<field>: <problem>"}, and changes nothing.

/assign and /rank are answered in front of FastAPI (`_FastPaths`, the ASGI app uvicorn calls: none
of FastAPI's middleware, routing or dependency solving) once the token and the experiment are
known; their FastAPI routes answer the rest (and document them at /docs). A service given scorers
warms every arm's model before it starts (the lifespan), so under uvicorn the port, /readyz
included, opens only once no request pays for a model's first calls.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field, FiniteFloat, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from bandit.assignment import MAX_UNIT
from bandit.errors import BanditInputError
from bandit.experiment import Assignment, ConflictError, Experiment, Exposure, UnknownExperiment
from bandit.store import DecisionRecord, Event

if TYPE_CHECKING:
    from recsys.app.rank import RankCall

DEFAULT_K = 10  # items /rank returns when a request names no k


@dataclass(frozen=True)
class Limits:
    """Request size limits: body bytes, events per feedback batch, candidates per rank call."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_events: int = 10_000
    max_candidates: int = 4096


class AssignRequest(BaseModel):
    unit_id: str = Field(min_length=1, max_length=MAX_UNIT, description="the randomisation unit (user, session)")


class AssignResponse(BaseModel):
    decision_id: str
    arm: str
    propensity: float
    weights_version: int


class FeedbackEvent(BaseModel):
    event_id: str = Field(min_length=1, max_length=128, description="idempotency key")
    decision_id: str = Field(min_length=1, max_length=64)
    reward: FiniteFloat = Field(description="in [0, 1], e.g. a click")
    latency_ms: FiniteFloat | None = Field(default=None, description="> 0: the serving latency")
    arm: str | None = Field(default=None, description="optional: checked against the decision's arm")


class FeedbackRequest(BaseModel):
    events: list[FeedbackEvent]


class ExposureItem(BaseModel):
    decision_id: str = Field(min_length=1, max_length=64, description="chosen by the client; idempotency key")
    unit_id: str = Field(min_length=1, max_length=256)
    weights_version: int = Field(ge=1, description="the snapshot's version the client assigned with")


class ExposuresRequest(BaseModel):
    exposures: list[ExposureItem]


class FeedbackResponse(BaseModel):
    accepted: int
    duplicates: int


class Candidate(TypedDict):
    item_id: Annotated[str | int, Field(description="returned with its score")]
    features: Annotated[dict[str, list[int]], Field(description="the item side's ids, by the run's feature keys")]


class RankRequest(TypedDict):
    """/rank's body, parsed by pydantic-core into plain dicts and lists (no model objects)."""

    unit_id: Annotated[str, Field(min_length=1, max_length=256)]
    dense: NotRequired[Annotated[list[FiniteFloat], Field(description="the request's dense context (default: none)")]]
    features: Annotated[dict[str, list[int]], Field(description="the user's and the context's ids, by feature key")]
    candidates: Annotated[list[Candidate], Field(min_length=1)]
    k: NotRequired[Annotated[int, Field(ge=1, description=f"items returned (default {DEFAULT_K})")]]


RANK_REQUEST = TypeAdapter(RankRequest)


class Ranker(Protocol):
    """Scores a /rank request's candidates with one arm's model (recsys.app.rank.VariantRanker)."""

    def prepare(self, req: RankRequest) -> RankCall:
        """The parsed request checked against the run's schema (BanditInputError naming the field)."""

    def rank(self, arm: str, call: RankCall) -> dict[str, Any]: ...

    def warm(self) -> None:
        """Score enough requests with every arm that later calls take their steady time."""


def create_app(experiments: Mapping[str, Experiment], token: str, limits: Limits = Limits(),
               ranker: Ranker | None = None) -> ASGI:
    """The ASGI app serving `experiments`; writes need `token`: the FastAPI app behind `_FastPaths`."""
    if not token:
        raise BanditInputError("token", "writes need a non-empty bearer token")
    app = FastAPI(title="recsys experiments", version="1", lifespan=_refreshing(experiments, ranker))
    metrics = _Metrics()
    expected = f"Bearer {token}".encode()
    log = _GroupLog()
    ranking = _Ranking(ranker, limits.max_candidates, metrics, log) if ranker is not None else None

    def experiment(exp_id: str) -> Experiment:
        found = experiments.get(exp_id)
        if found is None:
            raise UnknownExperiment("experiment", f"unknown experiment {exp_id!r:.80}")
        return found

    def authorise(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise _Unauthorised("authorization", "missing or wrong bearer token")

    @app.post("/v1/experiments/{exp_id}/assign", response_model=AssignResponse)
    async def assign(exp_id: str, body: AssignRequest, request: Request) -> Response:
        """Runs on the event loop: a hash, a lookup and one row committed without a disk flush
        (cheaper than a hop to the thread pool)."""
        authorise(request)
        a = experiment(exp_id).assign(body.unit_id)
        metrics.assigned.labels(exp_id, a.arm).inc()
        return JSONResponse({"decision_id": a.decision_id, "arm": a.arm, "propensity": a.propensity,
                             "weights_version": a.weights_version})

    @app.post("/v1/experiments/{exp_id}/feedback", response_model=FeedbackResponse)
    def feedback(exp_id: str, body: FeedbackRequest, request: Request, after: BackgroundTasks) -> FeedbackResponse:
        """The reply once the batch is durable; a recompute of the weights it makes due runs after
        the reply (in a worker thread), not before it."""
        authorise(request)
        exp = experiment(exp_id)
        if len(body.events) > limits.max_events:
            raise BanditInputError("events", f"{len(body.events)} events, at most {limits.max_events} per batch")
        _check_arms(exp, body.events)
        result = exp.feedback([Event(e.event_id, e.decision_id, e.reward, e.latency_ms) for e in body.events],
                              refresh=False)
        metrics.events.labels(exp_id).inc(result.accepted)
        metrics.duplicates.labels(exp_id).inc(result.duplicates)

        def refresh() -> None:
            exp.refresh()
            metrics.version.labels(exp_id).set(exp.version)

        after.add_task(refresh)
        return FeedbackResponse(accepted=result.accepted, duplicates=result.duplicates)

    @app.post("/v1/experiments/{exp_id}/exposures", response_model=FeedbackResponse)
    def exposures(exp_id: str, body: ExposuresRequest, request: Request) -> FeedbackResponse:
        """Decisions made client-side from a weights snapshot; the service recomputes each arm."""
        authorise(request)
        exp = experiment(exp_id)
        if len(body.exposures) > limits.max_events:
            raise BanditInputError("exposures", f"{len(body.exposures)}, at most {limits.max_events} per batch")
        result = exp.log_exposures([Exposure(x.decision_id, x.unit_id, x.weights_version) for x in body.exposures])
        return FeedbackResponse(accepted=result.accepted, duplicates=result.duplicates)

    @app.get("/v1/experiments/{exp_id}")
    def summary(exp_id: str) -> dict[str, Any]:
        return experiment(exp_id).summary()

    @app.get("/v1/experiments/{exp_id}/weights")
    def weights(exp_id: str) -> dict[str, Any]:
        return experiment(exp_id).snapshot()

    if ranking is not None:
        @app.post(RANK_PATH, openapi_extra=_request_body(RankRequest))
        async def rank(exp_id: str, request: Request) -> Response:
            """Assign the unit, then rank the candidates with the assigned variant's model (a
            request with the right token for a known experiment is answered by `_FastPaths`, in
            front of this route, by the same `_Ranking`)."""
            authorise(request)
            status, reply = ranking.reply(experiment(exp_id), await request.body())
            return Response(reply, status, media_type="application/json")

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        return {"status": "ready", "experiments": sorted(experiments)}

    _errors(app)
    app.add_middleware(_Timing, metrics=metrics)
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes)
    return _FastPaths(app, experiments, expected, metrics, limits.max_body_bytes, log, ranking)


REFRESH_SECONDS = 0.5


def _refreshing(experiments: Mapping[str, Experiment], ranker: Ranker | None) -> Callable[[FastAPI], Any]:
    """A lifespan that first warms the ranker's models (on the event loop's thread, where /rank
    scores), then checks every REFRESH_SECONDS, in a worker thread, whether an experiment's
    weights are due for their time-based recompute (the event-count one follows each feedback)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ranker is not None:
            ranker.warm()

        async def loop() -> None:
            while True:
                await asyncio.sleep(REFRESH_SECONDS)
                for exp in experiments.values():
                    await asyncio.to_thread(exp.refresh)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


Parsed = TypeVar("Parsed")


def _parsed(adapter: TypeAdapter[Parsed], raw: bytes) -> Parsed:
    """A JSON body validated by `adapter`, its errors as FastAPI's (located under "body")."""
    try:
        return adapter.validate_json(raw)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


def _request_body(body: type) -> dict[str, Any]:
    """OpenAPI's requestBody for a route that parses `body` itself (its JSON schema, definitions inlined)."""
    schema = TypeAdapter(body).json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            return inline(defs[ref.rsplit("/", 1)[-1]]) if ref.startswith("#/$defs/") else \
                {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


class _Unauthorised(BanditInputError):
    """A write without the right bearer token."""


_STATUS: list[tuple[type[Exception], int]] = [(_Unauthorised, 401), (UnknownExperiment, 404), (ConflictError, 409),
                                              (BanditInputError, 422)]


def _errors(app: FastAPI) -> None:
    @app.exception_handler(BanditInputError)
    async def refused(request: Request, exc: BanditInputError) -> JSONResponse:
        return _error(*_refusal(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(*_refusal(exc))


def _refusal(exc: BanditInputError | RequestValidationError) -> tuple[int, str]:
    """The status and the one-line message of a refused request."""
    if isinstance(exc, BanditInputError):
        status, message = next(code for cls, code in _STATUS if isinstance(exc, cls)), str(exc)
    elif (first := exc.errors()[0]).get("type") == "json_invalid":
        status, message = 400, f"body: malformed JSON ({first.get('ctx', {}).get('error', 'unparsable')})"
    else:
        status, message = 422, f"{_field(first.get('loc', ()))}: {first.get('msg', 'invalid')}"
    return status, " ".join(message.split())


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _field(loc: Any) -> str:
    """pydantic's location ("body", "events", 3, "reward") as events[3].reward."""
    out = ""
    for part in list(loc)[1:] or list(loc):
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


def _check_arms(exp: Experiment, events: list[FeedbackEvent]) -> None:
    """An event that names its arm must name a known arm (the decision's, checked by `feedback`)."""
    for i, e in enumerate(events):
        if e.arm is not None and e.arm not in exp.spec.arms:
            raise BanditInputError(f"events[{i}].arm", f"unknown arm {e.arm!r:.80} (arms: {', '.join(exp.spec.arms)})")
    named = {e.decision_id: (i, e.arm) for i, e in enumerate(events) if e.arm is not None}
    for decision_id, d in exp.store.decisions(exp.spec.id, list(named)).items():
        i, arm = named[decision_id]
        if exp.spec.arms[d.arm] != arm:
            raise BanditInputError(f"events[{i}].arm", f"decision {decision_id!r} was assigned "
                                   f"{exp.spec.arms[d.arm]!r}, not {arm!r}")


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("recsys_http_requests", "HTTP requests", ["path", "status"], registry=r)
        self.latency = Histogram("recsys_http_request_seconds", "request latency", ["path"], registry=r,
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .25, 1.0))
        self.assigned = Counter("recsys_assignments", "assignments", ["experiment", "arm"], registry=r)
        self.events = Counter("recsys_feedback_events", "new feedback events", ["experiment"], registry=r)
        self.duplicates = Counter("recsys_feedback_duplicates", "events already recorded", ["experiment"], registry=r)
        self.version = Gauge("recsys_weights_version", "current weights version", ["experiment"], registry=r)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyLimit:
    """Refuse a request body over `limit` bytes with 413, by its Content-Length or as it streams."""

    def __init__(self, app: ASGI, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_error(send, 413, f"body: larger than {self.limit} bytes")
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await _send_error(send, 413, f"body: larger than {self.limit} bytes")
                return
        body, sent = b"".join(chunks), False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class _Timing:
    """Request counts by status and latency, per route template (bounded label values)."""

    def __init__(self, app: ASGI, metrics: _Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def recording(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "other")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


ASSIGN_PATH = "/v1/experiments/{exp_id}/assign"
RANK_PATH = "/v1/experiments/{exp_id}/rank"
_PREFIX = "/v1/experiments/"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _GroupLog:
    """Decisions written before they are answered: the decisions of the requests that arrive
    together (in one turn of the event loop) are written in one transaction (group commit), then
    all answered, so a kill still loses no answered decision."""

    def __init__(self) -> None:
        self.pending: dict[str, list[tuple[DecisionRecord, asyncio.Future[None]]]] = {}

    async def logged(self, exp: Experiment, record: DecisionRecord) -> Assignment:
        """`record` once it is written."""
        waiting = self.pending.setdefault(exp.spec.id, [])
        done = asyncio.get_running_loop().create_future()
        waiting.append((record, done))
        if len(waiting) == 1:
            asyncio.get_running_loop().call_soon(self._flush, exp)
        await done
        return exp.assignment(record)

    @staticmethod
    def now(exp: Experiment, record: DecisionRecord) -> Assignment:
        """`record` written at once, in a transaction of its own (a /rank request: its scoring
        keeps the loop busy longer than a group would gather, so waiting a loop turn for one
        only delays the reply)."""
        exp.log([record])
        return exp.assignment(record)

    def _flush(self, exp: Experiment) -> None:
        batch = self.pending.pop(exp.spec.id)
        try:
            exp.log([record for record, _ in batch])
        except Exception as exc:  # every request of the batch fails alike (500)
            for _, done in batch:
                done.set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)


class _Ranking:
    """/rank once the token and the experiment are known: the body parsed by pydantic-core
    straight into dicts and lists, checked and turned into the serving path's tensors
    (Ranker.prepare), the unit's arm chosen, its model called, and only then the decision logged
    (written at once: `_GroupLog.now`) and the reply encoded once. A refused request logs nothing.
    Runs on the event loop's thread: for a request of ~100 candidates the whole of it is a fraction
    of a millisecond, less than a hop to a worker thread and back, and the model call runs as the
    variant's own scorer does (same thread, warmed, one torch thread)."""

    def __init__(self, ranker: Ranker, max_candidates: int, metrics: _Metrics, log: _GroupLog) -> None:
        self.ranker, self.max_candidates, self.metrics, self.log = ranker, max_candidates, metrics, log

    def reply(self, exp: Experiment, raw: bytes) -> tuple[int, bytes]:
        """(status, JSON body) of the /rank request `raw` to `exp`."""
        start = time.perf_counter()
        try:
            req = _parsed(RANK_REQUEST, raw)
            if len(req["candidates"]) > self.max_candidates:
                raise BanditInputError("candidates", f"{len(req['candidates'])}, at most {self.max_candidates}")
            call = self.ranker.prepare(req)
            record = exp.choose(call.unit_id)
            out = self.ranker.rank(exp.spec.arms[record.arm], call)
        except (BanditInputError, RequestValidationError) as exc:
            status, message = _refusal(exc)
            return status, json.dumps({"error": message}).encode()
        a = self.log.now(exp, record)
        self.metrics.assigned.labels(exp.spec.id, a.arm).inc()
        return 200, json.dumps({"decision_id": a.decision_id, "arm": a.arm, "propensity": a.propensity,
                                "weights_version": a.weights_version, **out,
                                "latency_ms": (time.perf_counter() - start) * 1e3}).encode()


class _FastPaths:
    """/assign's and /rank's hot paths in front of FastAPI, for a request with the right token
    to a known experiment (anything else goes on, body and all, to the FastAPI routes, which
    answer it, their errors included, as before). /assign: a JSON body that is exactly
    {"unit_id": <1 to MAX_UNIT characters, no NUL>} is answered here without routing, dependency
    solving or model validation (any other body goes on to the route). /rank: every request whose
    body is within the size limit is answered here by `_Ranking` (the route's own), refusals
    included. Counted in the same metrics as the routes. The outermost app: a request it answers
    passes through none of FastAPI's middleware (its error, telemetry and body-limit layers took
    ~20 us a request); an exception in it is uvicorn's 500, as ServerErrorMiddleware's would be."""

    def __init__(self, app: ASGI, experiments: Mapping[str, Experiment], authorization: bytes, metrics: _Metrics,
                 limit: int, log: _GroupLog, ranking: _Ranking | None) -> None:
        self.app, self.experiments, self.authorization, self.limit = app, experiments, authorization, limit
        self.metrics, self.log, self.ranking = metrics, log, ranking
        self.latency = {ASSIGN_PATH: metrics.latency.labels(ASSIGN_PATH), RANK_PATH: metrics.latency.labels(RANK_PATH)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exp, route = self._route(scope)
        if exp is None or not self._authorised(scope):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        body, complete = await _read_body(receive, self.limit)
        if route == RANK_PATH and complete and self.ranking is not None:
            status, reply = self.ranking.reply(exp, body)
        elif route == ASSIGN_PATH and complete and (unit := _unit_id(body)) is not None:
            a = await self.log.logged(exp, exp.choose(unit))
            self.metrics.assigned.labels(exp.spec.id, a.arm).inc()
            status, reply = 200, json.dumps({"decision_id": a.decision_id, "arm": a.arm, "propensity": a.propensity,
                                              "weights_version": a.weights_version}).encode()
        else:
            await self.app(scope, _replaying(body, complete, receive), send)
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(reply)).encode())]})
        await send({"type": "http.response.body", "body": reply})
        self.metrics.requests.labels(route, str(status)).inc()
        self.latency[route].observe(time.perf_counter() - start)

    def _route(self, scope: Scope) -> tuple[Experiment | None, str]:
        """The experiment and the route template of a POST to /assign or /rank; (None, "") otherwise."""
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(_PREFIX):
            return None, ""
        exp_id, _, action = path[len(_PREFIX):].rpartition("/")
        route = {"assign": ASSIGN_PATH, "rank": RANK_PATH}.get(action, "")
        return (self.experiments.get(exp_id), route) if route else (None, "")

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self.authorization)
        return False


def _unit_id(body: bytes) -> str | None:
    """The unit id of a body that is exactly {"unit_id": <a valid unit id>}; None otherwise."""
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    if not isinstance(raw, dict) or len(raw) != 1:
        return None
    unit = raw.get("unit_id")
    return unit if isinstance(unit, str) and 0 < len(unit) <= MAX_UNIT and "\0" not in unit else None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, and whether it was read whole within `limit` bytes (if not: what was read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """`receive` with what was read of the body given back first (the rest, if any, follows)."""
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return replay


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
