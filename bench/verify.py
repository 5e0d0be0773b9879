"""Raw Ed25519 verify throughput: the reference limit for ingest and sync.

Measures how many signatures per second ``cryptography``'s
``Ed25519PublicKey.verify`` checks with one thread and with two threads (each
verifying its own share of a pre-signed set), over a fixed duration, and the
speed-up of two threads over one. ``cryptography`` releases the GIL inside
verify, so on two cores the speed-up should be close to 2 (DESIGN.md measured
29k/s against 15.5k/s).

Nothing else in torv can check entries faster than this: ingest is measured
against the two-thread figure (target: at least 0.8 of it). Other benches
import :func:`measure_reference` to measure the same reference in their run.

Run: ``.venv/bin/python bench/verify.py [--seconds S] [--signatures N]``
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["Signed", "VerifyRates", "make_signed", "measure_reference", "verify_rate"]

#: A public key, a message and its signature.
Signed = tuple[Ed25519PublicKey, bytes, bytes]


@dataclass(frozen=True, slots=True)
class VerifyRates:
    """Signatures per second with one and with two threads."""

    one_thread: float
    two_threads: float

    @property
    def speedup(self) -> float:
        return self.two_threads / self.one_thread

    def lines(self) -> list[str]:
        return [
            f"verify 1 thread:  {self.one_thread:>9,.0f} sig/s",
            f"verify 2 threads: {self.two_threads:>9,.0f} sig/s",
            f"verify speed-up:  {self.speedup:>9.2f}x",
        ]


def make_signed(count: int, *, keys: int = 100) -> list[Signed]:
    """``count`` valid signatures by ``keys`` keys over header-sized messages."""
    private = [
        Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench-verify/%d" % i).digest())
        for i in range(keys)
    ]
    public = [key.public_key() for key in private]
    out: list[Signed] = []
    for n in range(count):
        # About the size of a signed entry header (domain prefix + ~150 bytes).
        message = b"torv-entry-v1\x00" + hashlib.sha256(b"%d" % n).digest() * 5
        out.append((public[n % keys], message, private[n % keys].sign(message)))
    return out


def _verify_until(share: Sequence[Signed], start: threading.Barrier, deadline: list[float]) -> int:
    start.wait()
    end = deadline[0]
    done = 0
    while True:
        for key, message, signature in share:
            key.verify(signature, message)
        done += len(share)
        if time.perf_counter() >= end:
            return done


def verify_rate(signed: Sequence[Signed], threads: int, seconds: float) -> float:
    """Signatures verified per second by ``threads`` threads for about ``seconds``.

    Each thread loops over its own share of ``signed`` until the time is up;
    the rate is the total verified over the time until the last one stopped.
    """
    shares = [signed[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]
    counts = [0] * threads

    def run(index: int) -> None:
        counts[index] = _verify_until(shares[index], barrier, deadline)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    barrier.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


def measure_reference(*, seconds: float = 2.0, signatures: int = 2000) -> VerifyRates:
    """Measure the verify reference: one thread, then two threads."""
    signed = make_signed(signatures)
    verify_rate(signed[:200], 1, 0.2)  # warm up caches and the allocator
    return VerifyRates(verify_rate(signed, 1, seconds), verify_rate(signed, 2, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--signatures", type=int, default=2000, help="pre-signed set size")
    args = parser.parse_args()
    rates = measure_reference(seconds=args.seconds, signatures=args.signatures)
    for line in rates.lines():
        print(line)


if __name__ == "__main__":
    main()
