"""The square's spam bound: how much a feed outside your scope may post there.

Posts on the square from feeds you do not replicate (not you, not followed,
not within your hops) are kept and passed on only within a per-author rate
bound: a token bucket of :data:`BURST` posts that refills at :data:`RATE`
posts per hour. A feed over its bound is ignored on the square (not stored,
not forwarded) until its bucket refills; a feed in your scope is never
bounded. The bucket table is bounded too: the feeds heard from longest ago
are forgotten first (a forgotten feed starts again with a full bucket, which
costs an attacker a fresh identity's worth of posts at most).

A pure state machine: time (seconds) is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["BURST", "RATE", "SquareBudget"]

#: Posts a feed outside the scope may make at once.
BURST: Final = 5.0
#: Posts per hour it may make after that.
RATE: Final = 6.0
_MAX_AUTHORS: Final = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class SquareBudget:
    """Per-author token buckets for the square."""

    def __init__(
        self, *, burst: float = BURST, rate_per_hour: float = RATE, max_authors: int = _MAX_AUTHORS
    ) -> None:
        self._burst = burst
        self._rate = rate_per_hour / 3600.0
        self._max = max_authors
        self._buckets: dict[bytes, _Bucket] = {}

    def allow(self, author: bytes, now: float) -> bool:
        """Whether ``author`` may have one more post on the square now (and take it)."""
        bucket = self._buckets.pop(author, None)
        if bucket is None:
            bucket = _Bucket(self._burst, now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        self._buckets[author] = bucket  # most recently heard from last
        while len(self._buckets) > self._max:
            del self._buckets[next(iter(self._buckets))]
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
