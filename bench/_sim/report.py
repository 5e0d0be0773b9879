"""What a run measured, and how the bench prints it.

Every figure counts (subscriber, entry) pairs: for each post, every follower
of its author that is honest (not a dropper) is expected to store it by the
end of the run; every node is online then (churn stops when posting stops).

- delivery: pairs stored / pairs expected, and how they came: gossip as the
  entry arrived, gossip held behind a gap until sync filled it, or sync;
- hops: links from the author to the copy that was stored (gossip and held
  entries; a synced entry counts one link from the peer that served it);
- latency: from the post to the moment the subscriber stored the entry
  (validation included); for gossip alone too, since a synced entry's
  latency includes the time its subscriber was offline;
- redundancy: entry messages the subscribers received, per stored pair,
  minus one (a copy that reaches the author is shown apart);
- bytes: every message's ``encode_message`` size (not the Noise and TCP
  framing: 18 bytes per frame of up to 64 KiB, and the IP headers), received
  by all nodes while posting and draining, per stored pair; and per node per
  second, mean and most loaded node; and per node per second with no posts
  at all (the last 10 s of the warm-up: mesh upkeep and gossip of nothing).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from .engine import GOSSIP, HELD, SYNC, Simulation

__all__ = ["TOPIC_SIZES", "SimResult", "TopicFigures", "format_result", "measure", "percentile"]

#: Upper bounds of the topic size classes (followers of the post's author).
TOPIC_SIZES: Final = (30, 300, 3000, 30000)


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of sorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    return values[max(0, math.ceil(share * len(values)) - 1)]


@dataclass(slots=True)
class TopicFigures:
    """The figures of the posts whose authors have a given range of followers."""

    largest: int = 0  # followers of the largest topic in the class
    expected: int = 0
    delivered: int = 0
    copies: int = 0
    hops: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SimResult:
    """The figures of one run (see the module docstring)."""

    scenario: str
    nodes: int
    seed: int
    posts: int
    expected: int
    delivered: int
    by_gossip: int
    by_held: int
    by_sync: int
    hops_p50: float
    hops_p99: float
    hops_max: float
    latency_p50: float
    latency_p99: float
    gossip_latency_p50: float
    gossip_latency_p99: float
    redundancy: float
    #: Redundancy of each author's first post in the run, its second, the
    #: later ones: choking needs a topic to have carried an entry first.
    redundancy_by_post: tuple[float | None, float | None, float | None]
    author_copies: int
    entry_bytes: float
    bytes_per_delivery: float
    entry_bytes_per_delivery: float
    node_bytes_per_s: float
    max_node_bytes_per_s: float
    background_bytes_per_s: float
    bytes_by_type: dict[str, int]
    structure: dict[str, float]
    disconnects: int
    dropped_entries: int
    sync_problems: dict[str, int]
    dials: int
    failed_dials: int
    events: int
    by_topic_size: dict[int, TopicFigures]

    @property
    def delivery_ratio(self) -> float:
        return self.delivered / self.expected if self.expected else 1.0


def measure(sim: Simulation) -> SimResult:
    """The figures of a finished run."""
    config = sim.config
    expected = delivered = copies = author_copies = 0
    how = [0, 0, 0]
    hops: list[float] = []
    latencies: list[float] = []
    gossip_latencies: list[float] = []
    classes: dict[int, TopicFigures] = {}
    by_post = [[0, 0], [0, 0], [0, 0]]  # deliveries, copies
    posted: dict[int, int] = {}
    for post in sim.posts:
        author = sim.nodes[post.author]
        author_copies += author.copies.get(post.index, 0)
        ordinal = posted[post.author] = posted.get(post.author, 0) + 1
        tally = by_post[min(ordinal, 3) - 1]
        followers = sim.graph.followers[post.author]
        bound = next((b for b in TOPIC_SIZES if len(followers) <= b), -1)
        topic = classes.setdefault(bound, TopicFigures())
        topic.largest = max(topic.largest, len(followers))
        for follower in followers:
            node = sim.nodes[follower]
            if node.dropper:
                continue
            expected += 1
            topic.expected += 1
            got = node.got.get(post.index)
            if got is None:
                continue
            delivered += 1
            topic.delivered += 1
            copies += node.copies.get(post.index, 0)
            tally[0] += 1
            tally[1] += node.copies.get(post.index, 0)
            topic.copies += node.copies.get(post.index, 0)
            at, hop, via = got
            how[via] += 1
            latencies.append(at - post.at)
            topic.latencies.append(at - post.at)
            if via != SYNC:
                gossip_latencies.append(at - post.at)
            if hop >= 0:
                hops.append(hop)
                topic.hops.append(hop)
    first, second, later = (got_copies / got - 1.0 if got else None for got, got_copies in by_post)
    for values in (hops, latencies, gossip_latencies):
        values.sort()
    for topic in classes.values():
        topic.hops.sort()
        topic.latencies.sort()
    window = config.duration + config.drain
    received = [node.received_bytes for node in sim.nodes]
    total = sum(received)
    entry_total = sim.bytes_by_type.get("entry", 0)
    return SimResult(
        scenario=config.scenario,
        nodes=len(sim.nodes),
        seed=config.seed,
        posts=len(sim.posts),
        expected=expected,
        delivered=delivered,
        by_gossip=how[GOSSIP],
        by_held=how[HELD],
        by_sync=how[SYNC],
        hops_p50=percentile(hops, 0.5),
        hops_p99=percentile(hops, 0.99),
        hops_max=hops[-1] if hops else 0.0,
        latency_p50=percentile(latencies, 0.5),
        latency_p99=percentile(latencies, 0.99),
        gossip_latency_p50=percentile(gossip_latencies, 0.5),
        gossip_latency_p99=percentile(gossip_latencies, 0.99),
        redundancy=copies / delivered - 1.0 if delivered else 0.0,
        redundancy_by_post=(first, second, later),
        author_copies=author_copies,
        entry_bytes=statistics.fmean(p.size for p in sim.posts) if sim.posts else 0.0,
        bytes_per_delivery=total / delivered if delivered else 0.0,
        entry_bytes_per_delivery=entry_total / delivered if delivered else 0.0,
        node_bytes_per_s=total / len(received) / window,
        max_node_bytes_per_s=max(received) / window,
        background_bytes_per_s=sim.background_bytes / len(sim.nodes) / 10.0,
        bytes_by_type=dict(sim.bytes_by_type),
        structure=dict(sim.snapshot),
        disconnects=len(sim.disconnects),
        dropped_entries=sim.dropped_entries,
        sync_problems=dict(sim.sync_problems),
        dials=sim.dials,
        failed_dials=sim.failed_dials,
        events=sim.events,
        by_topic_size=dict(
            sorted(classes.items(), key=lambda item: item[0] if item[0] > 0 else math.inf)
        ),
    )


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_result(result: SimResult) -> str:
    """The lines the bench prints for one run."""
    s = result.structure
    pairs = max(1, int(s.get("pairs", 0)))
    delivered = max(1, result.delivered)
    types = sorted(result.bytes_by_type.items(), key=lambda item: -item[1])
    split = ", ".join(f"{name} {count / delivered:.0f}" for name, count in types)
    problems = ", ".join(f"{k} {v}" for k, v in sorted(result.sync_problems.items())) or "none"
    lines = [
        f"--- {result.scenario}: {result.nodes} nodes, seed {result.seed}, "
        f"{result.posts} posts, {result.expected} (subscriber, post) pairs",
        f"  connections per node when posting starts: mean {s.get('degree_mean', 0):.1f}, "
        f"median {s.get('degree_median', 0):.0f}, max {s.get('degree_max', 0):.0f}; "
        f"follow pairs with a mesh below d_low {s.get('thin', 0) / pairs:.1%}, "
        f"with no path of subscribers to the author {s.get('unreachable', 0) / pairs:.2%}",
        f"  delivery   {result.delivery_ratio:.4%} ({result.delivered}/{result.expected}; "
        f"gossip {result.by_gossip}, held behind a gap {result.by_held}, "
        f"sync {result.by_sync})  target 100%",
        f"  hops       p50 {result.hops_p50:.0f}  p99 {result.hops_p99:.0f}  "
        f"max {result.hops_max:.0f}  target p99 <= 8",
        f"  latency    p50 {result.latency_p50 * 1000:.0f} ms  "
        f"p99 {result.latency_p99 * 1000:.0f} ms  "
        f"(gossip only: p50 {result.gossip_latency_p50 * 1000:.0f} ms, "
        f"p99 {result.gossip_latency_p99 * 1000:.0f} ms)",
        f"  redundancy {result.redundancy:.2f} extra copies per delivered entry  target <= 3 "
        f"(copies back to authors: {result.author_copies}); by each author's posts "
        f"in the run: first {_figure(result.redundancy_by_post[0])}, "
        f"second {_figure(result.redundancy_by_post[1])}, "
        f"later {_figure(result.redundancy_by_post[2])}",
        f"  bytes      {result.bytes_per_delivery:.0f} received per delivered entry "
        f"(entry message {result.entry_bytes:.0f} B; entries "
        f"{result.entry_bytes_per_delivery:.0f}): {split}",
        f"  per node   {result.node_bytes_per_s / 1000:.1f} kB/s mean, "
        f"{result.max_node_bytes_per_s / 1000:.1f} kB/s the busiest; "
        f"{result.background_bytes_per_s / 1000:.2f} kB/s with no posts",
        f"  faults     disconnects {result.disconnects}, entries withheld by droppers "
        f"{result.dropped_entries}, sync problems: {problems}; dials {result.dials} "
        f"({result.failed_dials} failed); {result.events} events",
    ]
    for bound, topic in result.by_topic_size.items():
        name = f"<= {bound}" if bound > 0 else f"> {TOPIC_SIZES[-1]}"
        ratio = topic.delivered / topic.expected if topic.expected else 1.0
        extra = topic.copies / topic.delivered - 1.0 if topic.delivered else 0.0
        lines.append(
            f"  topics of {name:>8} followers (largest {topic.largest}): "
            f"{topic.expected} pairs, delivery {ratio:.2%}, "
            f"hops p99 {percentile(topic.hops, 0.99):.0f}, "
            f"latency p99 {percentile(topic.latencies, 0.99) * 1000:.0f} ms, "
            f"redundancy {extra:.2f}"
        )
    return "\n".join(lines)
