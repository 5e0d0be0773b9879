"""Home timeline latency and memory on a store of a million entries.

The store holds 1,000,000 entries of 1,000 feeds (posting over some weeks,
interleaved in time like real feeds) stored by validated ingest, plus the
owner's own log: Follow entries for 200 of those feeds and some posts, written
with ``Store.append``, and 100 short conversations (the owner replies to a
followed feed's post, which answers and mentions the owner); and the square
table full (10,000 posts of 2,000 feeds not replicated, added to a cached
store that lacks them). It is built once
and cached in ``bench/.cache/``, keyed by its parameters (building takes a few
minutes).

A fresh subprocess then only opens the store and queries, so that nothing of
the build counts: the first timeline page (50 items) of the owner's follows
plus self with ``Store.timeline``, asked anew each run, p50 and p99 over the
runs; the same for page 2 (with the cursor of page 1); the first page of
each built-in timeline algorithm (``node/algorithms``: latest, popular,
square, mentions, threads) as the app asks for it; and the process's peak
RSS. It also prints SQLite's plan for the timeline's per-feed query.

Targets: page 1 p99 < 20 ms; algorithms p99 < 20 ms, ``popular`` < 50 ms;
peak RSS < 200 MB.

Run: ``.venv/bin/python bench/timeline.py [--feeds N] [--per-feed N] [--runs N]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# _gen comes first: it also puts this checkout on sys.path for `storage`.
from _gen import DAY_MS, END_MS, feed_key, ingest_generated, owner_key
from _measure import peak_rss_mb
from node import algorithms
from node.algorithms import Timeline
from storage.entry import create_entry
from storage.payloads import Follow, Post
from storage.store import SQUARE_CAPACITY, Store

P99_TARGET_MS = 20.0
#: First page of each timeline algorithm; the others' target is P99_TARGET_MS.
ALGORITHM_TARGETS_MS = {"popular": 50.0}
RSS_TARGET_MB = 200.0
#: Bump when the generated data changes, so that old caches are not used.
DATA_VERSION = 3
CACHE = Path(__file__).resolve().parent / ".cache"


def _build(path: Path, args: argparse.Namespace) -> None:
    """Build the store at ``path`` (by validated ingest), printing progress."""
    with Store.open(path) as store:
        owner = owner_key(args.seed)
        # The owner followed early on, then posted now and then over the weeks.
        first = END_MS - 60 * DAY_MS
        for n in range(args.follows):
            feed = _feed_id(args.seed, n * args.feeds // args.follows)
            store.append(owner, Follow(feed), timestamp=first + n * 60_000)
        for n in range(args.owner_posts):
            when = first + DAY_MS + n * (58 * DAY_MS // max(1, args.owner_posts))
            store.append(owner, Post(f"owner post {n}"), timestamp=when)
        ingest_generated(store, args.seed, args.feeds, args.per_feed, report_every=50_000)
        # Conversations with the owner, for the mentions and threads algorithms:
        # the owner replies to a followed feed's latest post, and it answers.
        me = owner.public_key().public_bytes_raw()
        for n in range(args.owner_threads):
            index = n * args.feeds // max(1, args.owner_threads) % args.feeds
            latest = store.timeline({_feed_id(args.seed, index)}, limit=1)
            if not latest or latest[0].entry.kind != "post":
                continue
            theirs = latest[0].entry
            root = getattr(theirs.content, "root", None) or theirs.id
            # Over the last day of the data (a log's times never go backwards,
            # so a feed's answer comes after its latest entry).
            when = END_MS - DAY_MS + n * (DAY_MS // max(1, args.owner_threads))
            reply = Post(
                f"owner reply {n}", root=root, parent=theirs.id, mentions=(theirs.author,)
            )
            mine = store.append(owner, reply, timestamp=when)
            store.append(
                feed_key(args.seed, index),
                Post(f"answer to the owner {n}", root=root, parent=mine.id, mentions=(me,)),
                timestamp=when + 60_000,
            )


def _fill_square(path: Path, args: argparse.Namespace) -> None:
    """Fill the square table (the posts of feeds outside any scope, kept for
    the square) to its capacity, if it is empty: 2,000 such feeds posting
    over the data's last two weeks. Kept apart from the cached logs, so a
    store cached before the square existed gets them on its next run."""
    with Store.open(path) as store:
        if store._db.execute("SELECT 1 FROM square LIMIT 1").fetchone():  # the bench looks inside
            return
        print(f"store: filling the square with {SQUARE_CAPACITY:,} posts of 2,000 outside feeds")
        posts = []
        span = 14 * DAY_MS
        for n in range(SQUARE_CAPACITY):
            key = feed_key(args.seed + 1_000_000, n % 2000)
            when = END_MS - span + n * (span // SQUARE_CAPACITY)
            posts.append(
                create_entry(
                    key, seq=100 + n, prev=bytes(32), timestamp=when, payload=Post(f"square {n}")
                )
            )
        store.keep_on_square(posts)


def _feed_id(seed: int, index: int) -> bytes:
    return feed_key(seed, index).public_key().public_bytes_raw()


def _store_path(args: argparse.Namespace) -> Path:
    key = (
        f"timeline-v{DATA_VERSION}-seed{args.seed}-feeds{args.feeds}-per{args.per_feed}"
        f"-follows{args.follows}-own{args.owner_posts}-threads{args.owner_threads}"
    )
    return CACHE / f"{key}.sqlite"


def _ensure_store(args: argparse.Namespace) -> Path:
    path = _store_path(args)
    if path.exists() and not args.rebuild:
        print(f"store: cached {path.relative_to(CACHE.parent.parent)}")
        return path
    CACHE.mkdir(exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    print(f"store: building {args.feeds * args.per_feed:,} entries into {path.name}")
    started = time.perf_counter()
    try:
        _build(partial, args)
        os.replace(partial, path)
    finally:
        for leftover in (partial, *(Path(f"{partial}{s}") for s in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)
    print(f"store: built in {time.perf_counter() - started:.0f} s")
    return path


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _timed(runs: int, query: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        query()
        out.append((time.perf_counter() - began) * 1000)
    return out


def _query(path: Path, args: argparse.Namespace) -> None:
    """Runs in the fresh subprocess: open, query, measure."""
    owner = owner_key(args.seed).public_key().public_bytes_raw()
    began = time.perf_counter()
    with Store.open(path) as store:
        opened = (time.perf_counter() - began) * 1000
        (square,) = store._db.execute("SELECT COUNT(*) FROM square").fetchone()
        began = time.perf_counter()
        authors = [*store.following(owner), owner]
        following_ms = (time.perf_counter() - began) * 1000
        print(
            f"opened in {opened:.1f} ms; {store.count():,} entries and {square:,} on the square;"
            f" owner follows {len(authors) - 1} feeds (read in {following_ms:.2f} ms)"
        )

        statements: list[str] = []
        store._db.set_trace_callback(statements.append)  # the bench looks inside
        began = time.perf_counter()
        page = store.timeline(authors, limit=args.limit)
        cold = (time.perf_counter() - began) * 1000
        store._db.set_trace_callback(None)
        probe = next(s for s in statements if "FROM entries" in s)
        plan = store._db.execute(f"EXPLAIN QUERY PLAN {probe}").fetchall()
        print(f"per-feed query: {len(statements) - 1} probes for page 1; plan:")
        for row in plan:
            print(f"  {row[-1]}")
        newest, oldest = page[0].sort_ts, page[-1].sort_ts
        print(
            f"page 1: {len(page)} items from {len({e.entry.author for e in page})} feeds,"
            f" spanning {(newest - oldest) / 3_600_000:.1f} h; first query {cold:.2f} ms"
        )

        first = _timed(args.runs, lambda: store.timeline(authors, limit=args.limit))
        cursor = page[-1].cursor
        second = _timed(
            args.runs, lambda: store.timeline(authors, limit=args.limit, before=cursor)
        )
        by_algorithm = _algorithms(store, owner, args)
    rss = peak_rss_mb()
    for name, samples in (("page 1", first), ("page 2", second)):
        p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
        verdict = "ok" if p99 < P99_TARGET_MS else "ABOVE TARGET"
        print(
            f"timeline {name} ({args.limit} items, {len(authors)} feeds, {args.runs} runs):"
            f" p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(samples):.2f} ms"
            f" (target p99 < {P99_TARGET_MS:.0f} ms: {verdict})"
        )
    for name, (samples, count) in by_algorithm.items():
        p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
        target = ALGORITHM_TARGETS_MS.get(name, P99_TARGET_MS)
        verdict = "ok" if p99 < target else "ABOVE TARGET"
        print(
            f"algorithm {name:<8} first page ({count} items, {len(samples)} runs):"
            f" p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(samples):.2f} ms"
            f" (target p99 < {target:.0f} ms: {verdict})"
        )
    verdict = "ok" if rss < RSS_TARGET_MB else "ABOVE TARGET"
    print(
        f"peak RSS of the query process: {rss:.1f} MB (target < {RSS_TARGET_MB:.0f} MB: {verdict})"
    )


def _algorithms(
    store: Store, owner: bytes, args: argparse.Namespace
) -> dict[str, tuple[list[float], int]]:
    """First page of each built-in timeline algorithm, as the app asks for it
    (ranked anew each run, moderation not included), at the data's "now"."""
    out = {}
    runs = max(1, args.runs // 5)
    for name in algorithms.BUILT_IN:
        timeline = Timeline(store, owner, END_MS, lambda feed: feed.hex()[:8])
        items, error = algorithms.run(name, timeline, args.limit)
        if error is not None:
            raise SystemExit(f"algorithm {name} failed: {error}")
        samples = _timed(
            runs,
            lambda n=name, t=timeline: algorithms.run(n, t, args.limit),  # type: ignore[misc]
        )
        out[name] = (samples, len(items))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--per-feed", type=int, default=1000, help="entries per feed")
    parser.add_argument("--follows", type=int, default=200, help="feeds the owner follows")
    parser.add_argument("--owner-posts", type=int, default=100)
    parser.add_argument(
        "--owner-threads", type=int, default=100, help="replies by and to the owner"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=500, help="queries per measurement")
    parser.add_argument("--limit", type=int, default=50, help="items per page")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached store")
    parser.add_argument("--query", type=Path, help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args()
    if args.follows > args.feeds:
        parser.error("--follows must not exceed --feeds")
    if args.query is not None:
        _query(args.query, args)
        return
    path = _ensure_store(args)
    _fill_square(path, args)
    command = [sys.executable, __file__, "--query", str(path)]
    for name in (
        "feeds",
        "per_feed",
        "follows",
        "owner_posts",
        "owner_threads",
        "seed",
        "runs",
        "limit",
    ):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    print("query process:", flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
