"""Which addresses to dial now: reconnection with exponential backoff.

A pure state machine (time passed in, no I/O) used by the node's connection
manager. An address that could not be reached, or whose handshake failed,
waits before the next attempt: :data:`FIRST_DELAY` seconds, doubling
after each further failure up to :data:`MAX_DELAY`. A session that started
resets the address. The book is bounded; the addresses that failed longest
ago are forgotten first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["FIRST_DELAY", "MAX_DELAY", "Backoff"]

FIRST_DELAY: Final = 5.0
MAX_DELAY: Final = 600.0
_MAX_TRACKED: Final = 4096

Address = tuple[str, int]


@dataclass(slots=True)
class _Failures:
    count: int
    retry_at: float


class Backoff:
    """Failed addresses and when each may be dialled again."""

    def __init__(self, *, first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY) -> None:
        self._first = first_delay
        self._max = max_delay
        self._failed: dict[Address, _Failures] = {}

    def failed(self, address: Address, now: float) -> float:
        """Count a failed dial of ``address``; return when it may be tried again."""
        held = self._failed.pop(address, None)
        count = 1 if held is None else held.count + 1
        delay = min(self._max, self._first * float(1 << min(count - 1, 30)))
        self._failed[address] = _Failures(count, now + delay)
        if len(self._failed) > _MAX_TRACKED:
            del self._failed[next(iter(self._failed))]
        return now + delay

    def succeeded(self, address: Address) -> None:
        """A session with ``address`` started: dial it at once next time."""
        self._failed.pop(address, None)

    def ready(self, address: Address, now: float) -> bool:
        held = self._failed.get(address)
        return held is None or held.retry_at <= now

    def filter(self, addresses: Iterable[Address], now: float) -> list[Address]:
        """``addresses`` that may be dialled now, in order, without repeats."""
        return [address for address in dict.fromkeys(addresses) if self.ready(address, now)]

    def failures(self, address: Address) -> int:
        held = self._failed.get(address)
        return 0 if held is None else held.count
