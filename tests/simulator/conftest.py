"""A small world and environment shared by the simulator tests."""
from __future__ import annotations

import pytest

from recsys.data.config import SyntheticConfig
from recsys.data.world import World
from simulator.config import LatencyConfig, SimulatorConfig

WORLD_CONFIG = SyntheticConfig(num_users=300, num_items=200)
WORLD = World.generate(WORLD_CONFIG, 0)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(num_requests=4000, batch_requests=1000, candidates=20, slate_size=5,
                           latency=LatencyConfig(p50_ms=(5.0, 40.0), p99_ms=(20.0, 160.0),
                                                 effects="akamai_7pct"))
