"""Signature checks in worker threads.

``cryptography`` releases the GIL inside Ed25519 verify, so two threads check
about twice as many signatures per second as one on a 2-core machine
(DESIGN.md). The pool is owned by its user and joined on :meth:`close`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from .entry import Entry
from .errors import BadSignature

__all__ = ["INLINE_BATCH", "Verifier", "default_workers"]


#: Batches of at most this many entries are checked in the calling thread:
#: handing them to a worker and back costs more than the checks save.
INLINE_BATCH: Final = 8


def default_workers() -> int:
    """Worker threads to use: the cores there are, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def _verify_all(entries: Sequence[Entry]) -> list[BadSignature | None]:
    results: list[BadSignature | None] = []
    for entry in entries:
        try:
            entry.verify()
        except BadSignature as exc:
            results.append(exc)
        else:
            results.append(None)
    return results


class Verifier:
    """A pool of threads that check entry signatures in parallel."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, entries: Sequence[Entry]) -> list[Future[list[BadSignature | None]]]:
        """Start checking ``entries``, split across the workers.

        The futures' results, concatenated in order, hold ``None`` for each
        entry that verifies and the :class:`BadSignature` for each that does not.
        A batch of at most :data:`INLINE_BATCH` entries is checked at once, in
        the calling thread.
        """
        if len(entries) <= INLINE_BATCH:
            done: Future[list[BadSignature | None]] = Future()
            done.set_result(_verify_all(entries))
            return [done]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="torv-verify")
        step = max(1, -(-len(entries) // self.workers))
        return [
            self._pool.submit(_verify_all, entries[start : start + step])
            for start in range(0, len(entries), step)
        ]

    def check(self, entries: Sequence[Entry]) -> list[BadSignature | None]:
        """Check ``entries`` and wait: one result per entry, in order."""
        results: list[BadSignature | None] = []
        for future in self.submit(entries):
            results.extend(future.result())
        return results

    def close(self) -> None:
        """Join the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
