"""Signature checks in worker threads, and for large batches in helper processes.

``cryptography`` releases the GIL inside Ed25519 verify, so two threads check
about twice as many signatures per second as one on a 2-core machine
(DESIGN.md). But a thread needs the GIL back after each signature, and while
another thread of the node runs Python (parsing and writing the entries of a
sync) it waits for its turn most of the time: two threads checked 310
signatures/s beside one thread busy in Python, against 22,000/s alone. So a
worker thread hands a large batch to a helper process of its own
(``_verify_worker.py``, one per thread, started when first needed), which has
a GIL of its own; small batches, and every batch if a helper cannot start or
fails, are checked in the thread.

The pool and its helpers are owned by the verifier's user and ended on
:meth:`close`; any thread may submit to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Final

from ._verify_worker import MAX_REQUEST, BadRequest, encode_records
from .entry import SIGNATURE_DOMAIN, Entry
from .errors import BadSignature

__all__ = ["INLINE_BATCH", "PROCESS_BATCH", "HelperFailed", "Verifier", "default_workers"]

log = logging.getLogger(__name__)

#: Batches of at most this many entries are checked in the calling thread:
#: handing them to a worker and back costs more than the checks save.
INLINE_BATCH: Final = 8
#: A worker thread's share of a batch goes to its helper process from this
#: many entries on (about 25 ms of checks; a helper starts in about 60 ms).
PROCESS_BATCH: Final = 256
#: After this many helpers failed, a verifier checks everything in threads.
_HELPER_FAILURES: Final = 3
_WORKER: Final = str(Path(__file__).with_name("_verify_worker.py"))
_LENGTH: Final = struct.Struct(">I")


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


def _failure(entry: Entry) -> BadSignature | None:
    """The error of an entry a helper found bad, checked again here."""
    try:
        entry.verify()
    except BadSignature as exc:
        return exc
    return None


class HelperFailed(Exception):
    """A helper process could not start or did not answer as it should."""


class _Helper:
    """A helper process that checks signatures (one thread talks to it at a time)."""

    def __init__(self) -> None:
        if not sys.executable:
            raise HelperFailed("no Python interpreter to start a verify helper with")
        try:
            self._process = subprocess.Popen(
                [sys.executable, _WORKER, SIGNATURE_DOMAIN.hex()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except OSError as exc:
            raise HelperFailed(f"could not start a verify helper: {exc}") from exc
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        self._answers: IO[bytes] = self._process.stdout

    def check(self, entries: Sequence[Entry]) -> list[BadSignature | None]:
        try:
            body = encode_records(
                [(entry.header.author, entry.signature, entry.header_bytes) for entry in entries]
            )
        except BadRequest as exc:  # a field no parsed entry has; checked here then
            raise HelperFailed(f"an entry the verify helper cannot take: {exc}") from exc
        if len(body) > MAX_REQUEST:
            raise HelperFailed("a batch too large for one request")
        try:
            self._requests.write(_LENGTH.pack(len(body)) + body)
            self._requests.flush()
            head = self._answers.read(_LENGTH.size)
            if len(head) != _LENGTH.size or _LENGTH.unpack(head)[0] != len(entries):
                raise HelperFailed(f"the verify helper ended (exit code {self._process.poll()})")
            answer = self._answers.read(len(entries))
        except OSError as exc:
            raise HelperFailed(f"the verify helper's pipe broke: {exc}") from exc
        if len(answer) != len(entries):
            raise HelperFailed("the verify helper's answer was cut short")
        return [None if ok else _failure(entry) for ok, entry in zip(answer, entries, strict=True)]

    def close(self) -> None:
        """End the helper: it leaves when its input ends; killed if it does not."""
        for stream in (self._requests, self._answers):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self._process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class Verifier:
    """A pool of threads (and their helper processes) that check entry
    signatures in parallel. ``processes=False`` keeps every check in threads."""

    def __init__(self, workers: int | None = None, *, processes: bool = True) -> None:
        self.workers = workers or default_workers()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._processes = processes
        self._helpers: dict[int, _Helper] = {}
        self._helper_failures = 0
        self._closed = False

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
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="torv-verify")
            pool = self._pool
        step = max(1, -(-len(entries) // self.workers))
        return [
            pool.submit(self._check_share, entries[start : start + step])
            for start in range(0, len(entries), step)
        ]

    def check(self, entries: Sequence[Entry]) -> list[BadSignature | None]:
        """Check ``entries`` and wait: one result per entry, in order."""
        results: list[BadSignature | None] = []
        for future in self.submit(entries):
            results.extend(future.result())
        return results

    @property
    def helpers(self) -> int:
        """Helper processes running now."""
        with self._lock:
            return len(self._helpers)

    def _check_share(self, entries: Sequence[Entry]) -> list[BadSignature | None]:
        """One worker thread's share of a batch (in that thread)."""
        if len(entries) >= PROCESS_BATCH:
            helper = self._helper()
            if helper is not None:
                try:
                    return helper.check(entries)
                except HelperFailed as exc:
                    self._retire(helper, exc)
        return _verify_all(entries)

    def _helper(self) -> _Helper | None:
        """This thread's helper process, started if need be; None: check here."""
        me = threading.get_ident()
        with self._lock:
            if not self._processes or self._closed:
                return None
            helper = self._helpers.get(me)
            if helper is not None:
                return helper
        try:
            helper = _Helper()
        except HelperFailed as exc:
            self._retire(None, exc)
            return None
        with self._lock:
            keep = not self._closed
            if keep:
                self._helpers[me] = helper
        if not keep:
            helper.close()
            return None
        return helper

    def _retire(self, helper: _Helper | None, why: HelperFailed) -> None:
        with self._lock:
            if helper is not None:
                self._helpers = {k: v for k, v in self._helpers.items() if v is not helper}
            self._helper_failures += 1
            if self._helper_failures >= _HELPER_FAILURES and self._processes:
                self._processes = False
                log.warning("%s; signatures are checked in threads from now on", why)
            else:
                log.info("%s; this batch is checked in a thread", why)
        if helper is not None:
            helper.close()

    def close(self) -> None:
        """Join the worker threads and end the helper processes."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            helpers, self._helpers = list(self._helpers.values()), {}
        for helper in helpers:
            helper.close()
