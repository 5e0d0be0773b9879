"""The connection manager's backoff: failed addresses wait, doubling, capped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.dialing import FIRST_DELAY, MAX_DELAY, Backoff

A = ("127.0.0.1", 7000)
B = ("127.0.0.1", 7001)


def test_a_failed_address_waits_and_the_wait_doubles() -> None:
    backoff = Backoff()
    assert backoff.ready(A, 0.0)
    assert backoff.failed(A, 100.0) == 100.0 + FIRST_DELAY
    assert not backoff.ready(A, 100.0 + FIRST_DELAY - 0.1)
    assert backoff.ready(A, 100.0 + FIRST_DELAY)
    assert backoff.failed(A, 200.0) == 200.0 + 2 * FIRST_DELAY
    assert backoff.failed(A, 300.0) == 300.0 + 4 * FIRST_DELAY
    assert backoff.failures(A) == 3
    assert backoff.ready(B, 300.0)


def test_a_session_resets_the_address() -> None:
    backoff = Backoff()
    backoff.failed(A, 0.0)
    backoff.failed(A, 10.0)
    backoff.succeeded(A)
    assert backoff.ready(A, 10.0)
    assert backoff.failed(A, 20.0) == 20.0 + FIRST_DELAY


def test_filter_keeps_order_drops_repeats_and_waiting_addresses() -> None:
    backoff = Backoff()
    backoff.failed(A, 0.0)
    assert backoff.filter([B, A, B], 1.0) == [B]
    assert backoff.filter([B, A, B], FIRST_DELAY) == [B, A]


@given(st.integers(min_value=1, max_value=200))
def test_the_wait_never_exceeds_the_cap(failures: int) -> None:
    backoff = Backoff()
    for _ in range(failures - 1):
        backoff.failed(A, 0.0)
    assert FIRST_DELAY <= backoff.failed(A, 0.0) <= MAX_DELAY


def test_the_book_is_bounded() -> None:
    backoff = Backoff()
    for port in range(10_000):
        backoff.failed(("10.0.0.1", port), 0.0)
    assert backoff.ready(("10.0.0.1", 0), 1.0)  # the oldest was forgotten
    assert not backoff.ready(("10.0.0.1", 9_999), 1.0)
