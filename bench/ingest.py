"""Validated ingest throughput into an empty store, against raw verify.

Builds 100,000 valid entries from 100 feeds (1,000 each: posts, replies with
root and parent, tags, mentions, reacts, reposts, follows, ...) as raw
``(header, signature, payload)`` triples before any timing. Then times what a
node does with entries from a peer: parse each with
``parse_entry_untrusted`` lazily in a generator handed to ``Store.ingest``
(which verifies signatures in worker threads, checks each chain and writes
one transaction per chunk) into an empty store in a temporary directory.

Prints entries/s, the two-thread Ed25519 verify rate measured in the same run
(``bench/verify.py``; before and after the ingest, the higher one counts),
and their ratio. Target: ingest / verify >= 0.8.

Also prints where the CPU time goes, per entry: parsing (timed alone),
verifying (from the one-thread rate) and the rest (the store's own work and
thread hand-offs). On a machine with two cores everything shares those two:
verify alone can fill them.

Run: ``.venv/bin/python bench/ingest.py [--feeds N] [--per-feed N] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# _gen comes first: it also puts this checkout on sys.path for `storage`.
from _gen import Raw, generate
from _measure import machine_load
from storage.entry import Entry, parse_entry_untrusted
from storage.store import IngestReport, Store
from verify import measure_reference

TARGET = 0.8


def _parsed(raws: Sequence[Raw]) -> Iterator[Entry]:
    for header, signature, payload in raws:
        yield parse_entry_untrusted(header, signature, payload)


def _ingest(raws: Sequence[Raw], directory: Path, chunk_size: int | None) -> IngestReport:
    with Store.open(directory / "bench.sqlite") as store:
        if chunk_size is None:
            return store.ingest(_parsed(raws))
        return store.ingest(_parsed(raws), chunk_size=chunk_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--per-feed", type=int, default=1000, help="entries per feed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=None, help="Store.ingest chunk size")
    parser.add_argument("--verify-seconds", type=float, default=2.0)
    parser.add_argument(
        "--profile", action="store_true", help="also run once under cProfile (main thread)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    raws = generate(args.seed, args.feeds, args.per_feed)
    print(
        f"generated: {len(raws):,} entries from {args.feeds} feeds"
        f" in {time.perf_counter() - started:.1f} s"
    )

    before = measure_reference(seconds=args.verify_seconds)
    with tempfile.TemporaryDirectory(prefix="torv-bench-") as tmp, machine_load() as load:
        wall = time.perf_counter()
        report = _ingest(raws, Path(tmp), args.chunk_size)
        wall = time.perf_counter() - wall
    after = measure_reference(seconds=args.verify_seconds)
    reference = max(before, after, key=lambda rates: rates.two_threads)
    print(f"verify 1 thread:  {reference.one_thread:>9,.0f} sig/s")
    print(
        f"verify 2 threads: {reference.two_threads:>9,.0f} sig/s (before ingest"
        f" {before.two_threads:,.0f}, after {after.two_threads:,.0f}; the higher counts)"
    )

    rate = len(raws) / wall
    print(
        f"ingest: {len(raws):,} entries in {wall:.2f} s: {rate:,.0f} entries/s"
        f" (stored {report.stored:,}, duplicates {report.duplicates}, forks {report.forks},"
        f" rejected {len(report.rejected)}){load.note()}"
    )
    for index, error in report.rejected[:3]:
        print(f"  rejected #{index}: {error.problem}: {error}")
    ratio = rate / reference.two_threads
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(f"ingest / verify 2 threads: {ratio:.2f} (target >= {TARGET}: {verdict})")

    parse = time.perf_counter()
    for _ in _parsed(raws):
        pass
    parse = time.perf_counter() - parse
    per = 1e6 / len(raws)
    verify_us = 1e6 / reference.one_thread
    parse_us = parse * per
    total_us = load.own_cpu_s * per
    print(
        f"CPU per entry: {total_us:.1f} us = parse {parse_us:.1f}"
        f" + verify {verify_us:.1f} + store and thread hand-offs"
        f" {total_us - parse_us - verify_us:.1f};"
        f" wall per entry {wall * per:.1f} us, so {total_us / (wall * per):.2f} cores busy"
    )

    if args.profile:
        profiler = cProfile.Profile()
        with tempfile.TemporaryDirectory(prefix="torv-bench-") as tmp:
            profiler.enable()
            _ingest(raws, Path(tmp), args.chunk_size)
            profiler.disable()
        print("profile of the main thread (by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
