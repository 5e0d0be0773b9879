"""The network simulator of ``bench/simulate.py`` at 50 nodes: the real routers
and planners deliver every post, and the figures the bench prints are there.

The simulator runs on a simulated clock, so these runs are deterministic by
seed and assert nothing about wall-clock speed.
"""

from __future__ import annotations

import pytest

from bench._sim.engine import SimConfig, Simulation
from bench._sim.report import SimResult, format_result, measure

SMALL = SimConfig(nodes=50, seed=3, warmup=10.0, duration=5.0, drain=5.0, rate=4.0)


def simulate(config: SimConfig) -> SimResult:
    sim = Simulation(config)
    sim.run()
    return measure(sim)


@pytest.fixture(scope="module")
def quiet() -> SimResult:
    return simulate(SMALL)


def test_every_subscriber_gets_every_post(quiet: SimResult) -> None:
    assert quiet.posts >= 10
    assert quiet.expected > quiet.posts  # posts have followers
    assert quiet.delivered == quiet.expected
    assert quiet.delivery_ratio == 1.0


def test_hops_latency_redundancy_and_bytes_are_measured(quiet: SimResult) -> None:
    assert 1 <= quiet.hops_p50 <= quiet.hops_p99 <= quiet.hops_max <= 8
    # At least one link's latency (10 ms), plus the validation delay.
    assert 0.01 < quiet.latency_p50 <= quiet.latency_p99
    assert quiet.redundancy >= 0.0
    # Every delivery took at least the entry's own bytes, and control traffic.
    assert quiet.bytes_per_delivery > quiet.entry_bytes > 200
    assert {"entry", "ihave", "heads"} <= set(quiet.bytes_by_type)
    assert "delivery   100.0000%" in format_result(quiet)


def test_same_seed_same_figures(quiet: SimResult) -> None:
    assert simulate(SMALL) == quiet


def test_nodes_that_were_offline_catch_up_by_sync() -> None:
    churn = simulate(
        SimConfig(
            nodes=50,
            seed=3,
            scenario="churn",
            warmup=10.0,
            duration=10.0,
            drain=10.0,
            rate=4.0,
            churn=0.3,
            offline_mean=4.0,
        )
    )
    assert churn.delivery_ratio == 1.0
    # Posts made while a follower was away reached it after it came back.
    assert churn.by_sync + churn.by_held > 0
