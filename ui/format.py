"""Plain formatting rules of the app: relative times, durations, rates.

Pure functions of their arguments (the current time is passed in), so that
screens render the same way in tests with a frozen clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["Clock", "duration", "ms_now", "rate", "relative_time"]

#: Seconds since the epoch, like :func:`time.time`; injectable for tests.
Clock = Callable[[], float]

_MINUTE: Final = 60
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR
_YEAR: Final = 365 * _DAY


def ms_now(clock: Clock = time.time) -> int:
    """The clock's time in milliseconds since the epoch."""
    return int(clock() * 1000)


def relative_time(timestamp_ms: int, now_ms: int) -> str:
    """How long ago ``timestamp_ms`` was: ``now``, ``2m``, ``3h``, ``5d``, ``2y``.

    Under a minute, and for a time in the future (the author's clock runs
    ahead), it is ``now``.
    """
    seconds = (now_ms - timestamp_ms) // 1000
    if seconds < _MINUTE:
        return "now"
    if seconds < _HOUR:
        return f"{seconds // _MINUTE}m"
    if seconds < _DAY:
        return f"{seconds // _HOUR}h"
    if seconds < _YEAR:
        return f"{seconds // _DAY}d"
    return f"{seconds // _YEAR}y"


def duration(seconds: float) -> str:
    """A span of time in at most two units: ``8s``, ``3m 04s``, ``2h 05m``, ``1d 03h``."""
    whole = max(0, int(seconds))
    if whole < _MINUTE:
        return f"{whole}s"
    if whole < _HOUR:
        return f"{whole // _MINUTE}m {whole % _MINUTE:02d}s"
    if whole < _DAY:
        return f"{whole // _HOUR}h {whole % _HOUR // _MINUTE:02d}m"
    return f"{whole // _DAY}d {whole % _DAY // _HOUR:02d}h"


def rate(delta: int, seconds: float) -> str:
    """Events per second over an interval; ``—`` when the interval is empty."""
    if seconds <= 0:
        return "—"
    return f"{max(0, delta) / seconds:.1f}/s"
