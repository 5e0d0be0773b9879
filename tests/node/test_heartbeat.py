"""The heartbeat's clock: beats keep their own grid through a held-up loop."""

from __future__ import annotations

import pytest

from node.runtime import _next_tick


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (10.2, 11.0),  # on time: the next beat of the grid
        (10.999, 11.0),
        (11.0, 12.0),  # a beat that is due now is not the next one
        (11.3, 12.0),  # one beat missed: skipped, not made up
        (13.5, 14.0),  # several missed
    ],
)
def test_the_next_tick_stays_on_the_grid_of_the_first(now: float, expected: float) -> None:
    assert _next_tick(10.0, 1.0, now) == pytest.approx(expected)


def test_ticks_after_a_stall_do_not_take_the_phase_of_the_stall() -> None:
    # Two clocks half a beat apart, both held up past their beats by one
    # stall: they fire together once, then apart again.
    first, second = 10.0, 10.5
    stall_ends = 12.7
    assert _next_tick(first, 1.0, stall_ends) == pytest.approx(13.0)
    assert _next_tick(second, 1.0, stall_ends) == pytest.approx(13.5)
