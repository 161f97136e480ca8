"""Everything a run draws requests from: the given World (as the simulator's drifting truth) and,
built from the config, the click model, the latency effects, the candidate source, the open
sessions and the random streams."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compression.config import TimingConfig
from recsys.data.world import World
from simulator.calibration import Calibration, calibrate_obd
from simulator.candidates import Embedder, Retriever, make_candidates
from simulator.click_models import examination_vector, make_click_model
from simulator.config import SimulatorConfig
from simulator.effects import LatencyEffects
from simulator.errors import SimulationError
from simulator.latency import LatencyModel
from simulator.serving import Arm, CandidateBatches, timed_latency_models
from simulator.sessions import Sessions
from simulator.step import Draws, Requests, Simulator
from simulator.streams import Streams
from simulator.world import SimWorld


@dataclass(eq=False)
class Environment:
    config: SimulatorConfig
    world: SimWorld
    simulator: Simulator
    source: Retriever
    batches: CandidateBatches
    sessions: Sessions
    streams: Streams
    calibration: Calibration | None = None
    timing: TimingConfig = field(default_factory=TimingConfig)  # the variants table's (compress.latency)
    t: int = 0  # requests sent so far

    @staticmethod
    def build(config: SimulatorConfig, world: World, seed: int,
              retrieval_model: Embedder | None = None, cache_dir: Path | str | None = None,
              timing: TimingConfig | None = None) -> Environment:
        """The environment of a run serving `world` (the World the variants' training logs came
        from); `seed` seeds the run's random streams; `timing`: how variants are timed in fitted
        mode, the variants table's settings (a config's compress.latency; its defaults if None).
        OBD calibration (click.calibrate = "obd") sets the examination per position and changes
        only the World's base CTR; the OBD sample is fetched into `cache_dir` (the data config's in
        a run; packaged.default_cache() if None)."""
        streams = Streams.from_seed(seed)
        click = config.click
        calibration = calibrate_obd(cache_dir=cache_dir) if click.calibrate == "obd" else None
        if calibration is not None:
            world = world.with_base_ctr(calibration.base_ctr, seed)
        truth = SimWorld.of(world, config.users.drift_requests, streams.world)
        examination = (calibration.examination_for(config.slate_size) if calibration else
                       examination_vector(click.examination, click.examination_decay, config.slate_size))
        model = make_click_model(click.model, examination, click.continuation, click.no_click_weight)
        simulator = Simulator(truth, model, LatencyEffects.from_config(config.latency),
                              config.slate_size, config.reward)
        source = make_candidates(config.candidate_source, world, streams.candidates, retrieval_model)
        sessions = Sessions.start(world, config.batch_requests, config.users.session_mean_requests,
                                  streams.sessions)
        return Environment(config, truth, simulator, source, CandidateBatches(world), sessions,
                           streams, calibration, timing or TimingConfig())

    def requests(self) -> tuple[Requests, Draws]:
        """The next step: one request per open session, and the users' shared draws."""
        s, n = self.sessions, len(self.sessions.users)
        users = s.users.copy()
        dense = self.world.world.sample_context(users, self.streams.context)
        t = self.t + np.arange(n)
        self.t += n
        requests = Requests(users, s.device.copy(), dense, t, s.patience.copy(),
                            self.source.candidates(users, self.config.candidates))
        return requests, Draws.draw(self.streams.users, n, self.config.slate_size)

    def advance(self, latency_ms: np.ndarray, abandoned: np.ndarray) -> None:
        """Close the step: erode patience, end sessions, open new ones."""
        ended = self.sessions.advance(latency_ms, abandoned, self.simulator.effects.patience_ms)
        self.sessions.renew(self.world.world, ended, self.config.users.session_mean_requests,
                            self.streams.sessions)

    def latency(self, variant: Arm, draws: Draws, measured_ms: np.ndarray) -> np.ndarray:
        """The variant's latency for each request: measured, or its model at the shared quantile."""
        if self.config.latency.source == "measured":
            return measured_ms
        if variant.latency is None:
            raise SimulationError(f"variant {variant.name!r}: no latency model (prepare_latency gives one)")
        return variant.latency.quantile(draws.latency)

    def prepare_latency(self, variants: list[Arm]) -> None:
        """Fitted mode: give each variant its latency model, from the config's p50/p99 or from the
        variants table's measurement of its serving path (`timed_latency_models`: one request's
        candidates per call, the variants interleaved round-robin, `timing`'s repeats, iters and
        threads) on requests from the latency stream, so the run's other draws do not depend on it."""
        lat = self.config.latency
        if lat.source == "measured" or all(v.latency is not None for v in variants):
            return
        if lat.p50_ms:
            if len(lat.p50_ms) != len(variants):
                raise SimulationError(f"latency.p50_ms: {len(lat.p50_ms)} values for {len(variants)} variants")
            for v, p50, p99 in zip(variants, lat.p50_ms, lat.p99_ms):
                v.latency = LatencyModel.from_quantiles(p50, p99)
            return
        rng = self.streams.latency
        users = rng.integers(0, self.world.num_users, lat.fit_samples)
        source = make_candidates(self.config.candidate_source, self.world.world, rng, None) \
            if self.config.candidate_source != "retrieval" else self.source
        world = self.world.world
        requests = Requests(users, world.sample_devices(rng, len(users)), world.sample_context(users, rng),
                            np.zeros(len(users), np.int64), np.ones(len(users)),
                            source.candidates(users, self.config.candidates))
        pools = {size: self.batches.batches(requests, size) for size in (1, 10)}
        todo = [v for v in variants if v.latency is None]
        models = timed_latency_models(todo, pools, self.timing)
        for v in todo:
            v.latency = models[v.name]
