"""The simulated population: who follows whom, where nodes are, and the DHT's provider sets.

Follow graph. Nodes live in communities of about ``community_size`` (people
follow friends, colleagues, a town); each node follows ``k`` feeds, ``k``
drawn from a log-normal distribution (median ``median_follows``, clipped to
``2 .. max_follows``). A share ``local_share`` of a node's follows goes to
its own community, the rest to the whole network; either way a feed is picked
with probability proportional to its author's *fitness*, drawn once per node
from a Pareto distribution (shape ``alpha``). Fitness-weighted choice is
preferential attachment in one step: follower counts come out heavy-tailed
(a few feeds followed by a tenth of the network, most by a handful).

Latency. Each node has a place in the unit square; the one-way latency of a
link is 10 ms plus 140 ms times the distance over the square's diagonal
(10 to 150 ms, about 60 ms on average), constant for the link's life. Links
are FIFO (as TCP is) and have no bandwidth bound: a message of any size
arrives one latency after it was sent.

Provider sets. A node announces itself in the DHT as a provider of every feed
it replicates (its own and those it follows), refreshing its records every
ten minutes; they are stored at the ``k`` = 20 DHT nodes closest to the
feed's key. Each of those keeps at most :data:`~node.records.MAX_PROVIDERS`
fresh records, chosen in its own random order
(:func:`node.records.merge_provider_sets`), and a lookup merges what they
return and keeps :data:`~node.records.MAX_PROVIDERS` again, in the looking
node's own random order. So a lookup returns every provider of a feed with
few followers, and otherwise a random 20 of the (at most 400) records its
storing nodes hold, the same 20 each time the same node looks. Records
outlive their node's sessions (they stay fresh for 20 minutes), so a lookup
may return a provider that is offline.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Final

from node.records import MAX_PROVIDERS

__all__ = [
    "DHT_REPLICAS",
    "FollowGraph",
    "GraphShape",
    "ProviderSets",
    "build_graph",
    "link_latency",
]

#: DHT nodes that store each key (kademlia's ``ksize``, as the node sets it).
DHT_REPLICAS: Final = 20
_MIN_LATENCY: Final = 0.010
_LATENCY_SPAN: Final = 0.140
_DIAGONAL: Final = math.sqrt(2.0)


@dataclass(frozen=True, slots=True)
class GraphShape:
    """The parameters of the follow graph (see the module docstring)."""

    community_size: int = 100
    median_follows: float = 15.0
    follows_sigma: float = 0.9
    max_follows: int = 200
    local_share: float = 0.5
    alpha: float = 1.5


@dataclass(frozen=True, slots=True)
class FollowGraph:
    """Who follows whom, by node index; a node's feed is its index."""

    follows: tuple[tuple[int, ...], ...]
    followers: tuple[tuple[int, ...], ...]
    community: tuple[int, ...]
    positions: tuple[tuple[float, float], ...]

    def __len__(self) -> int:
        return len(self.follows)


def build_graph(nodes: int, rng: random.Random, shape: GraphShape | None = None) -> FollowGraph:
    """A follow graph of ``nodes`` nodes drawn from ``rng`` (same seed, same graph)."""
    shape = shape or GraphShape()
    if nodes < 3:
        raise ValueError("a follow graph needs at least 3 nodes")
    fitness = [(1.0 - rng.random()) ** (-1.0 / shape.alpha) for _ in range(nodes)]
    size = max(2, min(shape.community_size, nodes))
    communities = max(1, nodes // size)
    community = [rng.randrange(communities) for _ in range(nodes)]
    members: list[list[int]] = [[] for _ in range(communities)]
    for index, place in enumerate(community):
        members[place].append(index)
    global_cum = _cumulative(fitness, range(nodes))
    local_cum = [_cumulative(fitness, group) for group in members]
    everyone = list(range(nodes))
    follows: list[tuple[int, ...]] = []
    for index in range(nodes):
        wanted = round(rng.lognormvariate(math.log(shape.median_follows), shape.follows_sigma))
        wanted = max(2, min(wanted, shape.max_follows, nodes - 1))
        neighbours = members[community[index]]
        local = min(round(wanted * shape.local_share), (len(neighbours) - 1) // 2)
        chosen: dict[int, None] = {}
        _draw(rng, neighbours, local_cum[community[index]], local, index, chosen)
        _draw(rng, everyone, global_cum, wanted, index, chosen)
        follows.append(tuple(chosen))
    followers: list[list[int]] = [[] for _ in range(nodes)]
    for index, feeds in enumerate(follows):
        for feed in feeds:
            followers[feed].append(index)
    positions = tuple((rng.random(), rng.random()) for _ in range(nodes))
    return FollowGraph(
        tuple(follows), tuple(tuple(f) for f in followers), tuple(community), positions
    )


def _cumulative(fitness: list[float], indices: range | list[int]) -> list[float]:
    total = 0.0
    cumulative = []
    for index in indices:
        total += fitness[index]
        cumulative.append(total)
    return cumulative


def _draw(
    rng: random.Random,
    population: list[int],
    cumulative: list[float],
    until: int,
    me: int,
    chosen: dict[int, None],
) -> None:
    """Add fitness-weighted picks from ``population`` to ``chosen`` until it
    holds ``until`` feeds (never ``me``, never twice)."""
    tries = 0
    while len(chosen) < until and tries < 50 * until:
        tries += 1
        pick = population[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
        if pick != me:
            chosen[pick] = None


def link_latency(a: tuple[float, float], b: tuple[float, float]) -> float:
    """One-way latency in seconds between two places in the unit square."""
    return _MIN_LATENCY + _LATENCY_SPAN * math.dist(a, b) / _DIAGONAL


class ProviderSets:
    """What a provider lookup in the DHT returns for each feed and looking node."""

    def __init__(self, graph: FollowGraph, rng: random.Random) -> None:
        self._rng = rng
        self._followers = graph.followers
        # Each node's own random order (its salt), for what it keeps or returns.
        self._salt = [rng.getrandbits(62) for _ in range(len(graph))]
        self._held: dict[int, list[int]] = {}  # feed -> records its storing nodes hold
        self._seen: dict[tuple[int, int], list[int]] = {}  # (feed, node) -> lookup

    def providers(self, feed: int) -> tuple[int, ...]:
        """Every node that announces ``feed``: its author and its followers."""
        return (feed, *self._followers[feed])

    def lookup(self, feed: int, node: int) -> list[int]:
        """The providers ``node`` finds for ``feed`` (at most
        :data:`MAX_PROVIDERS`, in ``node``'s random order)."""
        found = self._seen.get((feed, node))
        if found is None:
            salt = self._salt[node]
            found = sorted(self._stored(feed), key=lambda p: hash((salt, p)))[:MAX_PROVIDERS]
            self._seen[feed, node] = found
        return found

    def _stored(self, feed: int) -> list[int]:
        held = self._held.get(feed)
        if held is None:
            providers = self.providers(feed)
            if len(providers) <= MAX_PROVIDERS:
                held = list(providers)
            else:
                union: dict[int, None] = {}
                for _ in range(DHT_REPLICAS):
                    salt = self._rng.getrandbits(62)
                    ranked = sorted(providers, key=lambda p: hash((salt, p)))
                    union.update(dict.fromkeys(ranked[:MAX_PROVIDERS]))
                held = list(union)
            self._held[feed] = held
        return held
