"""The square's per-author rate bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.square import BURST, RATE, SquareBudget

A, B = b"a" * 32, b"b" * 32


def test_a_burst_then_the_refill_rate() -> None:
    budget = SquareBudget()
    allowed = [budget.allow(A, 0.0) for _ in range(10)]
    assert allowed == [True] * int(BURST) + [False] * (10 - int(BURST))
    assert budget.allow(B, 0.0)  # each author has its own bucket
    refill = 3600.0 / RATE
    assert not budget.allow(A, refill * 0.9)
    assert budget.allow(A, refill * 1.01)
    assert not budget.allow(A, refill * 1.02)


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    budget = SquareBudget()
    budget.allow(A, 0.0)
    later = 10 * 24 * 3600.0
    assert [budget.allow(A, later) for _ in range(int(BURST) + 1)][-1] is False


def test_the_table_is_bounded_and_forgets_the_quietest() -> None:
    budget = SquareBudget(max_authors=3)
    for n in range(5):
        budget.allow(bytes([n]) * 32, float(n))
    assert len(budget) == 3


@given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(times: list[float]) -> None:
    budget = SquareBudget()
    moments = sorted(times)
    granted = sum(budget.allow(A, when) for when in moments)
    if moments:
        elapsed = moments[-1] - moments[0]
        assert granted <= BURST + RATE * elapsed / 3600.0 + 1e-9
