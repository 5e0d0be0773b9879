"""Gossip propagation in a swarm of real nodes: delivery, latency, redundancy.

Starts 100 nodes in one process with :func:`node.testing.open_swarm`
(loopback TCP with the Noise handshake, a DHT island per node, all
bootstrapped from node 0, which each node dials), then has each node dial 8
others picked at random (``--degree``; ``--degree 0`` leaves the links to the
nodes' own connection managers, which in a swarm that starts at once find
only node 0 and the authors: a follower announces itself as a provider of the
feeds it follows only at its next announce, ten minutes on). Ten nodes are
authors; every node follows every author but itself with ``Node.follow``, and
the bench waits (bounded) until each node's router has a mesh of at least
``d_low`` peers in every author topic. Then the authors post 10 posts per
second in all, in turn, for 30 seconds.

Measured, for each post and each subscriber (every node but its author):

- delivery: the subscriber's ``EntryAdded`` event for the post (the entry
  was validated and stored) by the end of a drain period after the last post
  (30 s, or until every delivery is in). Delivery ratio = deliveries /
  (posts x subscribers), target 100%. The stores are checked afterwards too,
  which tells late entries from lost ones;
- latency: from the moment the author's ``post`` was called to the moment a
  task listening on the subscriber's ``events()`` got the event, both read
  with ``trio.current_time()`` in this one process; p50 and p99, target
  p99 < 250 ms. Also the latency to the first copy reaching the
  subscriber's router, which leaves out the subscriber's own checking and
  storing;
- redundancy: for each delivery, the copies of that post the subscriber's
  router was handed until the drain ended (every ``EntryMessage``, counted by
  wrapping each node's ``Router.handle_entry`` from outside); copies per
  delivery minus one, target <= 2. Copies that come back to an author are
  shown apart; control messages are counted the same way.

For comparison (from the issue): py-libp2p's GossipSub on this kind of
machine, 30 nodes at 10 msg/s in one process, measured p50 2.4 s and p99
4.5 s.

All nodes share one trio thread, one GIL and the machine's cores: the
figures include queueing behind the other nodes' work. The bench first
prints the host's signature-check rate (``bench/verify.py``'s reference), so
that runs at hours when the host is slower can be told apart. It prints the
CPU this process used, per message received, the time the cyclic garbage
collector took, and how late posts started against their schedule: a loaded
process shows there first.

A swarm in one process holds the objects of every node, and the collector's
older generations walk them all: a cost that grows with the square of the
node count, which nodes in their own processes do not have. So once the
swarm has started, the bench freezes its objects (``gc.freeze``) and raises
the collection thresholds; ``--no-gc-tuning`` leaves Python's defaults.
``--profile N`` profiles the event loop's thread during the posting and the
drain, and prints the N functions with the most own time.

Run: ``.venv/bin/python bench/propagate.py [--nodes N] [--seconds S] [--rate R]``
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import pstats
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import trio

import _gen  # noqa: F401  (puts this checkout on sys.path)
from _measure import machine_load, peak_rss_mb
from gossip.router import ControlMessage, RouterParams
from gossip.wire import EntryMessage, feed_topic
from node.runtime import EntryAdded, Node, NodeOptions
from node.testing import Swarm, open_swarm
from verify import measure_reference

DELIVERY_TARGET = 1.0
P99_TARGET_MS = 250.0
REDUNDANCY_TARGET = 2.0
#: gc.set_threshold() once the swarm has started (Python's default: 700, 10, 10).
_GC_THRESHOLDS = (10_000, 50, 50)
LIBP2P = "py-libp2p GossipSub (issue 3): 30 nodes at 10 msg/s in one process, p50 2.4 s, p99 4.5 s"
_WORDS = (
    *("gossip", "mesh", "peer", "feed", "signed", "log", "relay", "seed", "node", "sync"),
    *("square", "town", "café", "naïve", "the", "a", "to", "and", "of", "in", "is", "it"),
    *("you", "that", "was", "for", "on", "are", "with", "as", "at", "one", "have", "this"),
)


@dataclass(slots=True)
class _Tally:
    """What one node saw, by entry id (the posts are picked out at the end)."""

    copies: Counter[bytes] = field(default_factory=Counter)
    first_copy: dict[bytes, float] = field(default_factory=dict)
    added: dict[bytes, float] = field(default_factory=dict)
    control: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Posts:
    """The posts made: id -> (author's node index, time ``post`` was called)."""

    made: dict[bytes, tuple[int, float]] = field(default_factory=dict)
    #: Copies and messages are counted while this holds (until the drain ends).
    counting: bool = True
    expected: int = 0
    delivered: int = 0
    all_delivered: trio.Event = field(default_factory=trio.Event)
    lateness: list[float] = field(default_factory=list)
    call_time: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _GcTime:
    """Collections of the cyclic garbage collector, and the time they took."""

    collections: int = 0
    seconds: float = 0.0
    started: float = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.collections += 1
            self.seconds += time.perf_counter() - self.started


@contextmanager
def _gc_time() -> Iterator[_GcTime]:
    """Time the cyclic garbage collector (in any thread) while the block runs."""
    timer = _GcTime()
    gc.callbacks.append(timer)
    try:
        yield timer
    finally:
        gc.callbacks.remove(timer)


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _observe(node: Node, tally: _Tally, posts: _Posts) -> None:
    """Count every entry message and control message the node's router is handed."""
    router = node.router
    handle_entry, handle = router.handle_entry, router.handle

    def counted_entry(peer: bytes, entry_id: bytes, message: EntryMessage, now: float) -> None:
        if posts.counting:
            tally.copies[entry_id] += 1
            tally.first_copy.setdefault(entry_id, now)
        handle_entry(peer, entry_id, message, now)

    def counted_control(peer: bytes, message: ControlMessage, now: float) -> None:
        if posts.counting:
            tally.control[type(message).__name__] += 1
        handle(peer, message, now)

    # The node looks these up on its router for each message: wrapping them
    # counts from outside, without changing the router or the node.
    router.handle_entry = counted_entry  # type: ignore[method-assign]
    router.handle = counted_control  # type: ignore[method-assign]


async def _listen(
    node: Node,
    index: int,
    tally: _Tally,
    posts: _Posts,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Note when each entry is added at ``node``, as a program using it sees it."""
    async with node.events() as events:
        task_status.started()
        async for event in events:
            if not isinstance(event, EntryAdded) or event.entry_id in tally.added:
                continue
            tally.added[event.entry_id] = trio.current_time()
            made = posts.made.get(event.entry_id)
            if made is not None and made[0] != index:
                posts.delivered += 1
                if posts.delivered >= posts.expected:
                    posts.all_delivered.set()


async def _connect(nodes: Sequence[Node], degree: int, rng: random.Random) -> None:
    """Each node dials ``degree`` others picked at random (node 0 it dialled already)."""
    started = trio.current_time()
    picks = [
        rng.sample([n for n in range(1, len(nodes)) if n != index], min(degree, len(nodes) - 2))
        for index in range(len(nodes))
    ]

    async def dial_some(index: int) -> None:
        for other in picks[index]:
            await nodes[index].dial(*nodes[other].listen_address)

    async with trio.open_nursery() as nursery:
        for index in range(len(nodes)):
            nursery.start_soon(dial_some, index)
    peers = [len(node.peers()) for node in nodes]
    print(
        f"random links: each node dialled {degree} others in"
        f" {trio.current_time() - started:.1f} s; peers per node min {min(peers)}"
        f" median {statistics.median(peers):.0f} max {max(peers)}",
        flush=True,
    )


def _meshes_ready(nodes: Sequence[Node], topics: Sequence[str], d_low: int) -> int:
    """How many (node, author topic) meshes have at least ``d_low`` peers."""
    return sum(len(node.router.mesh(topic)) >= d_low for node in nodes for topic in topics)


async def _form(swarm: Swarm, authors: list[int], d_low: int, patience: float) -> None:
    """Every node follows every author; wait up to ``patience`` s for the meshes."""
    nodes = swarm.nodes
    started = trio.current_time()

    async def follow_all(node: Node) -> None:
        for index in authors:
            if nodes[index] is not node:
                await node.follow(nodes[index].me)

    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(follow_all, node)
    print(
        f"follows: {len(nodes)} nodes x {len(authors)} authors in"
        f" {trio.current_time() - started:.1f} s",
        flush=True,
    )

    topics = [feed_topic(nodes[index].me) for index in authors]
    started = trio.current_time()
    total = len(nodes) * len(topics)
    # The router is a pure state machine with no event for a mesh change:
    # look at the meshes a few times a second until they hold or time is up.
    deadline = started + patience
    while (ready := _meshes_ready(nodes, topics, d_low)) < total:
        if trio.current_time() >= deadline:
            break
        await trio.sleep(0.25)
    sizes = [len(node.router.mesh(topic)) for node in nodes for topic in topics]
    peers = [len(node.peers()) for node in nodes]
    print(
        f"meshes {'formed' if ready == total else 'NOT ALL FORMED'} after"
        f" {trio.current_time() - started:.1f} s: {ready}/{total} (node, author topic)"
        f" meshes have >= {d_low} peers; mesh size min {min(sizes)} median"
        f" {statistics.median(sizes):.0f} max {max(sizes)}; peers per node min {min(peers)}"
        f" median {statistics.median(peers):.0f} max {max(peers)}",
        flush=True,
    )


async def _settle(quiet: float, patience: float) -> None:
    """Wait (at most ``patience`` s) until this process uses less than ``quiet``
    cores over a second: the DHT announcements that the follows started run
    on for a while after ``follow`` returned, and would count against gossip."""
    started = trio.current_time()
    busy = float("inf")
    while trio.current_time() - started < patience:
        cpu, wall = time.process_time(), time.perf_counter()
        await trio.sleep(1.0)
        busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
        if busy < quiet:
            break
    print(
        f"settled after {trio.current_time() - started:.1f} s: the swarm used {busy:.2f} cores"
        f" in its last second (waiting for < {quiet:g}, at most {patience:g} s)",
        flush=True,
    )


async def _post(node: Node, author: int, number: int, due: float, posts: _Posts) -> None:
    rng = random.Random(number)
    text = f"post {number}: " + " ".join(rng.choices(_WORDS, k=rng.randint(4, 30)))
    called = trio.current_time()
    posts.lateness.append(called - due)
    entry = await node.post(text)
    posts.call_time.append(trio.current_time() - called)
    # Recorded before any peer can have it: the node only queues the
    # messages in post(), and they go out after this task yields.
    posts.made[entry.id] = (author, called)


async def _publish(
    swarm: Swarm, authors: list[int], posts: _Posts, rate: float, seconds: float
) -> None:
    """``rate`` posts per second in all, the authors in turn, for ``seconds``."""
    count = round(rate * seconds)
    posts.expected = count * (len(swarm.nodes) - 1)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for number in range(count):
            due = start + number / rate
            await trio.sleep_until(due)
            author = authors[number % len(authors)]
            # A task per post, so that a slow post does not hold up the schedule.
            nursery.start_soon(_post, swarm.nodes[author], author, number, due, posts)


def _count_held(node: Node, ids: Sequence[bytes]) -> int:
    """How many of ``ids`` the node's store holds (call in the node's worker)."""
    return sum(node.store.find(entry_id) is not None for entry_id in ids)


async def _held(nodes: Sequence[Node], posts: _Posts, tallies: Sequence[_Tally]) -> int:
    """(subscriber, post) pairs held in the stores, whether an event said so or not."""
    held = 0
    for index, (node, tally) in enumerate(zip(nodes, tallies, strict=True)):
        theirs = [entry_id for entry_id, (author, _) in posts.made.items() if author != index]
        missing = [entry_id for entry_id in theirs if entry_id not in tally.added]
        found = await node._db(_count_held, node, missing) if missing else 0
        held += len(theirs) - len(missing) + found
    return held


def _report(posts: _Posts, tallies: Sequence[_Tally], held: int) -> tuple[int, int]:
    """Print delivery, latency and redundancy; return (messages received, deliveries)."""
    subscribers = len(tallies) - 1
    latencies: list[float] = []
    arrivals: list[float] = []
    copies = echoes = by_sync = 0
    for index, tally in enumerate(tallies):
        for entry_id, (author, called) in posts.made.items():
            if author == index:
                echoes += tally.copies[entry_id]
                continue
            added = tally.added.get(entry_id)
            if added is None:
                continue
            # Copies of an entry a subscriber got in time, until the drain ended.
            copies += tally.copies[entry_id]
            latencies.append(added - called)
            first = tally.first_copy.get(entry_id)
            if first is None:
                by_sync += 1
            else:
                arrivals.append(first - called)
    expected = len(posts.made) * subscribers
    delivered = len(latencies)
    ratio = delivered / expected if expected else 0.0
    print(
        f"delivery: {delivered:,} of {expected:,} (posts {len(posts.made)} x subscribers"
        f" {subscribers}): {100 * ratio:.2f}% (target 100%:"
        f" {'ok' if ratio >= DELIVERY_TARGET else 'BELOW TARGET'}); {by_sync} came by sync"
        f" only; held in the stores when checked after the drain: {held:,}"
    )
    if latencies:
        p99 = _percentile(latencies, 0.99)
        verdict = "ok" if p99 * 1000 < P99_TARGET_MS else "ABOVE TARGET"
        print(
            f"latency publish -> EntryAdded at the subscriber: p50"
            f" {_ms(_percentile(latencies, 0.5))}, p99 {_ms(p99)} (target p99 <"
            f" {P99_TARGET_MS:.0f} ms: {verdict}), max {_ms(max(latencies))}"
        )
    if arrivals:
        print(
            f"latency publish -> first copy at the subscriber's router: p50"
            f" {_ms(_percentile(arrivals, 0.5))}, p99 {_ms(_percentile(arrivals, 0.99))}"
        )
    if delivered:
        redundancy = copies / delivered - 1
        verdict = "ok" if redundancy <= REDUNDANCY_TARGET else "ABOVE TARGET"
        print(
            f"redundancy: {copies:,} copies received by subscribers for {delivered:,}"
            f" deliveries: {redundancy:.2f} (target <= {REDUNDANCY_TARGET:.0f}: {verdict});"
            f" besides, {echoes:,} copies came back to the authors"
        )
    control: Counter[str] = Counter()
    for tally in tallies:
        control.update(tally.control)
    print(
        "control messages received: "
        + ", ".join(f"{name} {count:,}" for name, count in sorted(control.items()))
    )
    received = sum(tally.copies.total() for tally in tallies) + control.total()
    return received, delivered


async def _run(args: argparse.Namespace) -> None:
    # The host's speed at this hour: the tail follows how busy the one event
    # loop is, so runs on a slower hour are told apart by this figure.
    speed = measure_reference(seconds=1.0)
    print(
        f"machine speed: verify 1 thread {speed.one_thread:,.0f} sig/s,"
        f" 2 threads {speed.two_threads:,.0f} sig/s",
        flush=True,
    )
    count = args.nodes
    authors = [(2 * k + 1) * count // (2 * args.authors) for k in range(args.authors)]
    started = trio.current_time()
    options = NodeOptions(
        heads_interval=args.heads_interval,
        router=replace(
            RouterParams(),
            idontwant_min_size=args.idontwant_min_size,
            d_unchoked=args.d_unchoked,
            choking=args.choking,
        ),
    )
    async with open_swarm(count, options=options) as swarm:
        print(
            f"started {count} nodes in {trio.current_time() - started:.1f} s;"
            f" authors: nodes {', '.join(map(str, authors))}",
            flush=True,
        )
        if args.degree:
            await _connect(swarm.nodes, args.degree, random.Random(args.seed))
        await _form(swarm, authors, RouterParams().d_low, args.mesh_wait)
        await _settle(args.quiet, args.mesh_wait)
        if args.gc_tuning:
            # A hundred nodes in one process hold a hundred times the objects
            # of one node, and the collector's older generations walk them
            # all, ever more often as the swarm allocates: a cost one node in
            # its own process does not have. Keep what start-up made out of
            # the collector's way, and collect the older generations rarely.
            gc.collect()
            gc.freeze()
            gc.set_threshold(*_GC_THRESHOLDS)
            print(
                f"gc: froze the {gc.get_freeze_count():,} objects of the started swarm,"
                f" thresholds {_GC_THRESHOLDS} (--no-gc-tuning: Python's defaults)",
                flush=True,
            )
        posts = _Posts()
        tallies = [_Tally() for _ in swarm.nodes]
        async with trio.open_nursery() as nursery:
            for index, (node, tally) in enumerate(zip(swarm.nodes, tallies, strict=True)):
                _observe(node, tally, posts)
                await nursery.start(_listen, node, index, tally, posts)
            print(
                f"posting {args.rate:g} posts/s from {len(authors)} authors for"
                f" {args.seconds:g} s, then waiting up to {args.drain:g} s for the rest",
                flush=True,
            )
            profile = cProfile.Profile() if args.profile else None
            with machine_load() as load, _gc_time() as collector:
                wall = time.perf_counter()
                if profile is not None:
                    profile.enable()
                await _publish(swarm, authors, posts, args.rate, args.seconds)
                with trio.move_on_after(args.drain):
                    await posts.all_delivered.wait()
                if profile is not None:
                    profile.disable()
                posts.counting = False
                wall = time.perf_counter() - wall
            nursery.cancel_scope.cancel()
        held = await _held(swarm.nodes, posts, tallies)
        messages, delivered = _report(posts, tallies, held)
        if posts.lateness:
            print(
                f"posting: {len(posts.made)} posts; started late against the schedule by p50"
                f" {_ms(_percentile(posts.lateness, 0.5))}, max {_ms(max(posts.lateness))};"
                f" post() took p50 {_ms(_percentile(posts.call_time, 0.5))},"
                f" max {_ms(max(posts.call_time))}"
            )
        cpu = load.own_cpu_s
        print(
            f"CPU of this process from the first post to the end of the drain: {cpu:.1f} s"
            f" over {wall:.1f} s wall ({cpu / wall:.2f} cores busy){load.note()};"
            f" {messages / wall:,.0f} gossip messages received per second,"
            f" {1e6 * cpu / max(1, messages):.0f} us of CPU per message"
            f" ({delivered:,} entries checked and stored among them); cyclic GC took"
            f" {collector.seconds:.1f} s in {collector.collections:,} collections"
        )
        print(f"for comparison, {LIBP2P}")
        if profile is not None:
            # The event loop's thread only: the store's worker threads are not in it.
            print(f"profile of the event loop's thread, top {args.profile} by own time:")
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
        stopping = trio.current_time()
    print(
        f"stopped the swarm in {trio.current_time() - stopping:.1f} s;"
        f" peak RSS {peak_rss_mb():.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--authors", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second in all")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to post")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="wait for deliveries after the last post"
    )
    parser.add_argument(
        "--degree",
        type=int,
        default=8,
        help="random links each node dials (0: only the nodes' own connection managers)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random links")
    parser.add_argument(
        "--heads-interval",
        type=float,
        default=NodeOptions().heads_interval,
        help="NodeOptions.heads_interval of every node (to compare settings)",
    )
    parser.add_argument(
        "--idontwant-min-size",
        type=int,
        default=RouterParams().idontwant_min_size,
        help="RouterParams.idontwant_min_size of every node (to compare settings)",
    )
    parser.add_argument(
        "--mesh-wait", type=float, default=60.0, help="wait at most S s for the meshes"
    )
    parser.add_argument(
        "--d-unchoked",
        type=int,
        default=RouterParams().d_unchoked,
        help="RouterParams.d_unchoked of every node (to compare settings)",
    )
    parser.add_argument(
        "--no-choking",
        dest="choking",
        action="store_false",
        help="RouterParams.choking=False for every node (to compare settings)",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="post once the swarm uses fewer cores than this (at most --mesh-wait s later)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile the posting and drain with cProfile and print the top N functions",
    )
    parser.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="leave the garbage collector as Python sets it (by default the objects made at"
        " start-up are frozen and the collection thresholds raised)",
    )
    args = parser.parse_args()
    if not 1 <= args.authors < args.nodes or args.rate <= 0 or args.seconds <= 0:
        parser.error("need 1 <= authors < nodes, and a positive rate and duration")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Records the DHT cannot place yet are the DHT's business, not this bench's.
    logging.getLogger("kademlia").setLevel(logging.ERROR)
    trio.run(_run, args)


if __name__ == "__main__":
    main()
