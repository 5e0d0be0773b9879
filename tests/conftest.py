"""Shared test setup: Hypothesis runs are derandomized so that a failure
reproduces on every machine, and no test depends on wall-clock speed."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "torv",
    derandomize=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("torv")
