"""The discrete-event simulation: the node's own routers and sync planners on a
simulated network.

What runs for real (the very code a node runs, driven as ``node.runtime``
drives it): each node's :class:`~gossip.router.Router` with the default
:class:`~gossip.router.RouterParams` (meshes, GRAFT/PRUNE, heartbeats,
IHAVE/IWANT, IDONTWANT, scores), and for each connection one
:class:`~gossip.sync.SyncPlanner` per side, with :func:`~gossip.sync.answer`
serving ``want`` requests and a :class:`~gossip.sync.GapBuffer` holding
entries that gossip brought ahead of a gap. Entries are real signed entries
(one Ed25519 key per node), so wire sizes are real (:mod:`._sim.sizes`) and
the planners read real headers.

What is modelled:

- Time: a heap of events on a simulated clock; the code above never sees a
  wall clock. A message arrives one link latency after it was sent (see
  :mod:`.graph`); a connection takes three latencies to set up (TCP and the
  Noise XX handshake), a dial to a node that is offline fails after the
  node's dial timeout (5 s).
- The store: a node holds each feed it replicates from seq 1 up to a head,
  without holes, as the SQLite store does. Judging an entry (parse, verify,
  store; batched in the node) takes ``validation_delay``; the verdict follows
  the node's rules: ACCEPT if the entry extends the head (or is held
  already), IGNORE and hold it in the gap buffer if it is ahead of a gap
  (every planner is told about the gap), IGNORE if the feed is out of scope.
  Sync batches are stored after the same delay, then the gap buffer is
  drained as the node does. Serving a ``want`` takes no time.
- The connection manager (``Node._maintain`` and ``_find_peers``): every
  ``maintain_interval`` seconds, at its own phase, a node looks for the
  feeds it follows whose mesh has fewer than ``d_low`` peers, looks up the
  providers of up to four of them (all of them during the warm-up, standing
  in for a network that has run for a while; one DHT lookup takes
  ``lookup_delay``) and dials them until it has ``2 * target_peers``
  connections, and dials two providers of a feed with an empty mesh past
  that bound; below ``target_peers`` it also dials its address book (peers
  it dialled before). A node refuses inbound sessions past 256. Failed dials
  back off as ``node.dialing.Backoff`` does.
- Sync: each side of a connection sends its heads for its whole scope, and
  runs its planner over the feeds both sides replicate (the node's planner
  covers its whole scope, but the other feeds never get an offer, so they
  only cost memory: 2.7 GB instead of 0.65 GB at 1,000 nodes). For a
  gap in a feed the peer does not replicate, the node's planner would send a
  ``want`` and get an empty answer: those bytes are counted, not sent.
  ``announce`` answers heads, ``announce_progress`` runs every 2 s.
- Churn: a node that goes offline closes its connections (a clean shutdown:
  its peers learn at once); it comes back as a restarted node (a new router
  and gap buffer, the same store and address book), dials again and syncs
  what it missed with the planners.
- Droppers: they subscribe, graft and gossip like everyone, but never send an
  entry (neither forwarded nor answering IWANT), never answer sync requests,
  and send no heads after their hello.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.router import Delivery, Router, RouterParams, Verdict
from gossip.sync import GapBuffer, SyncPlanner, answer
from gossip.wire import (
    MAX_HEADS,
    MAX_RANGE,
    SQUARE,
    EntryBatch,
    EntryMessage,
    Heads,
    RawEntry,
    Want,
    WireMessage,
    feed_topic,
)
from storage.entry import create_entry
from storage.payloads import Post

from .graph import FollowGraph, GraphShape, ProviderSets, build_graph, link_latency
from .sizes import WireSizes

__all__ = [
    "GOSSIP",
    "HELD",
    "SCENARIOS",
    "SYNC",
    "Published",
    "SimConfig",
    "SimNode",
    "Simulation",
]

SCENARIOS: Final = ("quiet", "churn", "droppers")
#: The most followed feeds that post once each, besides the drawn posts.
POPULAR_POSTS: Final = 5
#: Seconds before a dial to an unreachable node fails (the node's ``_DIAL_TIMEOUT``).
DIAL_TIMEOUT: Final = 5.0
#: Provider lookups per connection manager round (the node's ``_LOOKUPS_PER_ROUND``).
LOOKUPS_PER_ROUND: Final = 4
#: ... in the first STARTING seconds after a node started (``_LOOKUPS_STARTING``
#: and ``_STARTING``; the node runs up to 8 at once, here a round takes one delay).
LOOKUPS_STARTING: Final = 64
STARTING: Final = 30.0
#: Providers of a feed with an empty mesh dialled past the peer bound
#: (the node's ``_RESCUE_DIALS``).
RESCUE_DIALS: Final = 2
#: Inbound sessions a node accepts (the node's ``max_inbound``).
MAX_INBOUND: Final = 256
#: Seconds between rounds of ``SyncPlanner.announce_progress`` (``heads_interval``).
HEADS_INTERVAL: Final = 2.0
#: Address book entries the connection manager reads per round.
BOOK_READ: Final = 32
_TIMESTAMP_BASE_MS: Final = 1_750_000_000_000
_WORDS: Final = (
    "the",
    "square",
    "coffee",
    "train",
    "late",
    "again",
    "garden",
    "rain",
    "photo",
    "music",
    "tonight",
    "anyone",
    "new",
    "post",
    "release",
    "river",
)

# How an entry reached a node's store.
GOSSIP: Final = 0  # judged as it arrived
HELD: Final = 1  # arrived by gossip ahead of a gap, stored once the gap filled
SYNC: Final = 2  # a sync batch


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One run. Times are simulated seconds.

    The run has three phases: ``warmup`` (nodes start, connect, form meshes;
    no posts), ``duration`` (posts at ``rate`` per second network-wide;
    churn, if any, happens here), ``drain`` (no more posts; every offline
    node is back; late deliveries and sync finish).
    """

    nodes: int = 1000
    seed: int = 1
    scenario: str = "quiet"
    warmup: float = 20.0
    duration: float = 30.0
    drain: float = 20.0
    rate: float = 10.0
    #: churn: the share of nodes offline at any moment, and the mean offline span.
    churn: float = 0.2
    offline_mean: float = 10.0
    #: droppers: the share of nodes that forward nothing.
    droppers: float = 0.1
    validation_delay: float = 0.005
    lookup_delay: float = 1.0
    target_peers: int = 8
    #: The connection manager's bound while some mesh is thin; None: the
    #: node's (twice ``target_peers``).
    max_peers: int | None = None
    maintain_interval: float = 5.0
    #: The connection manager also fills its own feed's mesh while the node
    #: has posts its followers may not have heard (``Node._thin_feeds``);
    #: False: the rule before that, for comparison (followed feeds only).
    author_dials: bool = True
    params: RouterParams = field(default_factory=RouterParams)
    shape: GraphShape = field(default_factory=GraphShape)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
        if self.nodes < 3 or self.duration <= 0 or self.rate <= 0:
            raise ValueError("at least 3 nodes, a positive duration and a positive rate")


@dataclass(slots=True)
class Published:
    """One published entry and what the run measured of it."""

    index: int
    author: int
    seq: int
    entry_id: bytes
    message: EntryMessage
    at: float
    size: int


@dataclass(slots=True, eq=False)
class Conn:
    """A connection between nodes ``a`` and ``b``, open until either side closes it."""

    a: int
    b: int
    latency: float
    open: bool = True


@dataclass(slots=True, eq=False)
class SimNode:
    """One node: its router, store heads, connections and what it received."""

    index: int
    feed: bytes
    seed: bytes  # its signing key's seed
    follows: tuple[int, ...]
    scope: frozenset[bytes]
    scope_order: tuple[bytes, ...]
    topics: tuple[str, ...]
    dropper: bool
    router: Router | None = None
    online: bool = True
    epoch: int = 0
    heads: dict[bytes, int] = field(default_factory=dict)
    gaps: GapBuffer = field(default_factory=GapBuffer)
    conns: dict[int, Conn] = field(default_factory=dict)
    planners: dict[int, SyncPlanner] = field(default_factory=dict)
    shared: dict[int, frozenset[bytes]] = field(default_factory=dict)  # the planners' scopes
    timers: dict[int, float] = field(default_factory=dict)  # peer -> planner wake-up
    dialling: set[int] = field(default_factory=set)
    book: dict[int, None] = field(default_factory=dict)  # peers dialled, latest last
    retry: dict[int, tuple[int, float]] = field(default_factory=dict)  # failures, retry at
    # post index -> (time stored, hops from the author, how: GOSSIP/HELD/SYNC)
    got: dict[int, tuple[float, int, int]] = field(default_factory=dict)
    held_hops: dict[int, int] = field(default_factory=dict)  # in the gap buffer
    copies: dict[int, int] = field(default_factory=dict)  # entry messages received
    inbound: int = 0  # sessions other nodes dialled
    own_unheard: bool = True  # posts that may have reached no follower (Node._own_unheard)
    own_sought: bool = False  # its followers looked up since (Node._own_sought)
    started: float = 0.0  # when it last came online
    next_heads: float = 0.0  # when the planners announce heads next
    sent_bytes: int = 0
    received_bytes: int = 0
    key: Ed25519PrivateKey | None = None


_Handler = Callable[..., None]


class Simulation:
    """Build with a :class:`SimConfig`, then :meth:`run`; read the fields after."""

    def __init__(self, config: SimConfig, graph: FollowGraph | None = None) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.graph = graph or build_graph(config.nodes, self.rng, config.shape)
        self.providers = ProviderSets(self.graph, self.rng)
        self.params = config.params
        self.sizes = WireSizes()
        self.now = 0.0
        self._heap: list[tuple[float, int, _Handler, tuple[Any, ...]]] = []
        self._count = itertools.count()
        self.events = 0
        n = len(self.graph)
        seeds = [self.rng.randbytes(32) for _ in range(n)]
        feeds = [
            Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
            for seed in seeds
        ]
        self.index_of = {feed: index for index, feed in enumerate(feeds)}
        self.topic_of = [feed_topic(feed) for feed in feeds]
        dropping: set[int] = set()
        if config.scenario == "droppers":
            dropping = set(self.rng.sample(range(n), round(n * config.droppers)))
        self.nodes: list[SimNode] = []
        for index in range(n):
            follows = self.graph.follows[index]
            scope = (feeds[index], *(feeds[f] for f in follows))
            self.nodes.append(
                SimNode(
                    index=index,
                    feed=feeds[index],
                    seed=seeds[index],
                    follows=follows,
                    scope=frozenset(scope),
                    scope_order=tuple(sorted(scope)),
                    topics=tuple(self.topic_of[f] for f in (index, *follows)),
                    dropper=index in dropping,
                    heads=dict.fromkeys(scope, 0),
                )
            )
        self.logs: dict[bytes, list[RawEntry]] = {feed: [] for feed in feeds}
        self.posts: list[Published] = []
        self.post_of: dict[RawEntry, int] = {}
        weights = [(1 + len(self.graph.followers[i])) ** 0.5 for i in range(n)]
        self._author_cum = list(itertools.accumulate(weights))
        # Measurements: the window opens when posting starts.
        self.measuring = False
        self.bytes_by_type: Counter[str] = Counter()
        self.messages_by_type: Counter[str] = Counter()
        self.background_bytes = 0  # during the last 10 s of the warm-up
        self.dropped_entries = 0
        self.disconnects: list[str] = []
        self.sync_problems: Counter[str] = Counter()
        self.dials = 0
        self.failed_dials = 0
        self.refused_dials = 0  # refused by a node with max_inbound sessions
        self.snapshot: dict[str, float] = {}

    # --- the clock ------------------------------------------------------------

    def _at(self, time: float, handler: _Handler, *args: Any) -> None:
        heapq.heappush(self._heap, (time, next(self._count), handler, args))

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Run the whole scenario (warm-up, posting, drain); ``progress`` is
        called with the simulated time every 10 simulated seconds."""
        config = self.config
        start = config.warmup
        end = start + config.duration
        stop = end + config.drain
        for node in self.nodes:
            self._start(node)
        self._at(max(0.0, start - 10.0), self._open_background)
        self._at(start, self._open_window)
        # The most followed feeds post once each, early: the largest topics.
        popular = sorted(range(len(self.nodes)), key=lambda i: -len(self.graph.followers[i]))
        for rank, author in enumerate(popular[:POPULAR_POSTS]):
            self._at(start + 0.5 + rank, self._post, author)
        t = start
        while True:
            t += self.rng.expovariate(config.rate)
            if t >= end:
                break
            self._at(t, self._post)
        if config.scenario == "churn":
            self._plan_churn(start, end)
        if progress is not None:
            for tick in range(10, int(stop) + 1, 10):
                self._at(float(tick), progress, float(tick))
        heap = self._heap
        pop = heapq.heappop
        # Millions of long-lived objects and no reference cycles: the cyclic
        # collector's full passes would cost more than the simulation.
        collecting = gc.isenabled()
        gc.disable()
        try:
            while heap and heap[0][0] <= stop:
                time, _, handler, args = pop(heap)
                self.now = time
                self.events += 1
                handler(*args)
        finally:
            if collecting:
                gc.enable()
        self.now = stop

    def _open_background(self) -> None:
        self.background_bytes = -sum(node.received_bytes for node in self.nodes)

    def _open_window(self) -> None:
        self.background_bytes += sum(node.received_bytes for node in self.nodes)
        self.snapshot = self._structure()
        for node in self.nodes:
            node.sent_bytes = node.received_bytes = 0
        self.measuring = True

    # --- nodes coming and going -----------------------------------------------------

    def _start(self, node: SimNode) -> None:
        """The node process starts: a fresh router in its topics, its loops."""
        node.online = True
        router = Router(node.feed, self.params, random.Random(self.rng.random()))
        for topic in node.topics:
            router.join(topic, self.now)
        node.router = router
        node.gaps = GapBuffer()
        node.next_heads = self.now + HEADS_INTERVAL
        node.own_unheard, node.own_sought = True, False  # a new Node's
        node.started = self.now
        epoch = node.epoch
        self._at(
            self.now + self.rng.random() * self.params.heartbeat_interval,
            self._heartbeat,
            node,
            epoch,
        )
        self._at(self.now + self.rng.random() * 0.5, self._maintain, node, epoch)

    def _stop(self, node: SimNode) -> None:
        """The node process stops: its connections close, its memory is gone."""
        for peer in list(node.conns):
            self._close(node, peer)
        node.online = False
        node.epoch += 1
        node.router = None
        node.timers.clear()
        node.dialling.clear()
        node.held_hops.clear()

    def _plan_churn(self, start: float, end: float) -> None:
        """Alternate online and offline spans so that a share ``churn`` of the
        nodes is offline at any moment in ``[start, end)``; all are back at ``end``."""
        config = self.config
        offline_mean = config.offline_mean
        online_mean = offline_mean * (1.0 - config.churn) / config.churn
        for node in self.nodes:
            offline = self.rng.random() < config.churn
            t = start
            while t < end:
                span = self.rng.expovariate(1.0 / (offline_mean if offline else online_mean))
                if offline:
                    self._at(t, self._go_offline, node)
                    self._at(min(end, t + span), self._come_back, node)
                t += span
                offline = not offline

    def _go_offline(self, node: SimNode) -> None:
        if node.online:
            self._stop(node)

    def _come_back(self, node: SimNode) -> None:
        if not node.online:
            self._start(node)

    # --- connections ------------------------------------------------------------

    def _maintain(self, node: SimNode, epoch: int) -> None:
        """One round of the node's connection manager (``Node._maintain`` and
        ``Node._find_peers``)."""
        if node.epoch != epoch:
            return
        config = self.config
        self._at(self.now + config.maintain_interval, self._maintain, node, epoch)
        router = node.router
        assert router is not None
        d_low = self.params.d_low
        feeds = node.follows
        if node.own_sought and router.mesh(self.topic_of[node.index]):
            node.own_unheard = False  # followers it looked up joined its mesh
        if config.author_dials and node.own_unheard:
            feeds = (*node.follows, node.index)
        thin = [f for f in feeds if len(router.mesh(self.topic_of[f])) < d_low]
        self.rng.shuffle(thin)
        # Feeds with no mesh peer at all first (Node._thin_feeds).
        thin.sort(key=lambda f: bool(router.mesh(self.topic_of[f])))
        connected = len(node.conns)
        if connected >= config.target_peers and not thin:
            return
        # A network that has run for a while has looked up every thin feed;
        # the warm-up gets there at once (the node looks up four per round).
        if self.now < config.warmup:
            lookups = thin
        elif self.now - node.started < STARTING:
            lookups = thin[:LOOKUPS_STARTING]
        else:
            lookups = thin[:LOOKUPS_PER_ROUND]
        limit = config.target_peers
        if lookups:
            limit = config.max_peers or 2 * config.target_peers
        book: list[int] = []
        if connected < config.target_peers:
            book = [p for p in reversed(node.book) if p not in node.conns][:BOOK_READ]
            if not lookups and node.follows:
                count = min(len(node.follows), LOOKUPS_PER_ROUND)
                lookups = self.rng.sample(node.follows, count)
        if node.index in lookups:
            node.own_sought = True  # its followers, if any, are being dialled
            if not any(p != node.index for p in self.providers.lookup(node.index, node.index)):
                node.own_unheard = False  # nobody provides its feed
        delay = config.lookup_delay if lookups else 0.0
        self._at(self.now + delay, self._dial_round, node, epoch, lookups, bool(thin), book, limit)

    def _dial_round(
        self,
        node: SimNode,
        epoch: int,
        lookups: list[int],
        thin: bool,
        book: list[int],
        limit: int,
    ) -> None:
        """The lookups came back: dial. A feed with no mesh peer at all gets
        up to ``RESCUE_DIALS`` of its providers dialled past the bound."""
        if node.epoch != epoch:
            return
        router = node.router
        assert router is not None
        found: list[int] = []
        rescue: list[int] = []
        for feed in lookups:
            mesh = len(router.mesh(self.topic_of[feed]))
            if feed == node.index:
                rescues = self.params.d_low - mesh  # as many followers as make a mesh
            else:
                # Node._find_peers: one past the bound for a thin mesh too
                rescues = (RESCUE_DIALS if not mesh else 1) if thin else 0
            picked = 0
            for peer in self.providers.lookup(feed, node.index):
                if peer == node.index or peer in node.conns:
                    continue
                if picked < rescues:
                    rescue.append(peer)
                    picked += 1
                else:
                    found.append(peer)
        candidates = rescue + (found + book if thin else book + found)
        dialled: set[int] = set()
        for position, peer in enumerate(candidates):
            if position >= len(rescue) and len(node.conns) + len(dialled) >= limit:
                break
            if peer in dialled or peer in node.conns or peer in node.dialling:
                continue
            retry = node.retry.get(peer)
            if retry is not None and retry[1] > self.now:
                continue
            dialled.add(peer)
            self._dial(node, peer)

    def _dial(self, node: SimNode, peer: int) -> None:
        self.dials += 1
        node.dialling.add(peer)
        other = self.nodes[peer]
        if other.online:
            latency = link_latency(self.graph.positions[node.index], self.graph.positions[peer])
            self._at(self.now + 3 * latency, self._dialled, node, node.epoch, peer, latency)
        else:
            self._at(self.now + DIAL_TIMEOUT, self._dial_failed, node, node.epoch, peer)

    def _dial_failed(self, node: SimNode, epoch: int, peer: int) -> None:
        if node.epoch != epoch:
            return
        self.failed_dials += 1
        node.dialling.discard(peer)
        # The node's Backoff: 5 s, doubling per failure, at most 600 s.
        failures = node.retry.get(peer, (0, 0.0))[0] + 1
        node.retry[peer] = (failures, self.now + min(600.0, 5.0 * 2 ** (failures - 1)))

    def _dialled(self, node: SimNode, epoch: int, peer: int, latency: float) -> None:
        if node.epoch != epoch:
            return
        node.dialling.discard(peer)
        other = self.nodes[peer]
        if not other.online:
            self._dial_failed(node, epoch, peer)
            return
        if peer in node.conns:
            return
        if other.inbound >= MAX_INBOUND:
            self.refused_dials += 1
            self._dial_failed(node, epoch, peer)
            return
        other.inbound += 1
        node.retry.pop(peer, None)
        node.book.pop(peer, None)
        node.book[peer] = None
        conn = Conn(node.index, peer, latency)
        now = self.now
        for a, b in ((node, other), (other, node)):
            a.conns[b.index] = conn
            assert a.router is not None
            a.router.add_peer(b.feed, now)
            # Over the feeds both replicate (see the module docstring); the
            # hello lists the whole scope, as the node's does.
            shared = tuple(feed for feed in a.scope_order if feed in b.scope)
            planner = SyncPlanner(shared, a.heads)
            a.planners[b.index] = planner
            a.shared[b.index] = frozenset(shared)
            planner.hello()
            pairs = [(feed, a.heads[feed]) for feed in a.scope_order]
            for start in range(0, len(pairs), MAX_HEADS):
                self._send(a, b.index, conn, Heads(tuple(pairs[start : start + MAX_HEADS])))
        self._flush(node)
        self._flush(other)

    def _close(self, node: SimNode, peer: int) -> None:
        conn = node.conns.get(peer)
        if conn is None:
            return
        conn.open = False
        other = self.nodes[peer]
        self.nodes[conn.b].inbound -= 1
        for a, b in ((node, other), (other, node)):
            del a.conns[b.index]
            a.planners.pop(b.index, None)
            a.shared.pop(b.index, None)
            a.timers.pop(b.index, None)
            assert a.router is not None
            a.router.remove_peer(b.feed, self.now)
        self._flush(other)

    # --- messages ------------------------------------------------------------------

    def _send(self, node: SimNode, peer: int, conn: Conn, message: WireMessage) -> None:
        size = self.sizes.size(message)
        node.sent_bytes += size
        if self.measuring:
            self.bytes_by_type[message.type] += size
            self.messages_by_type[message.type] += 1
        self._at(self.now + conn.latency, self._arrive, conn, node.index, peer, message, size)

    def _flush(self, node: SimNode) -> None:
        """Carry out what the node's router asked for (``Node._flush``)."""
        router = node.router
        assert router is not None
        index_of = self.index_of
        for peer_feed, message in router.drain():
            peer = index_of[peer_feed]
            conn = node.conns.get(peer)
            if conn is None:
                continue
            if node.dropper and type(message) is EntryMessage:
                self.dropped_entries += 1
                continue
            self._send(node, peer, conn, message)
        for delivery in router.deliveries():
            self._at(
                self.now + self.config.validation_delay, self._judge, node, node.epoch, delivery
            )
        for peer_feed, reason in router.disconnects():
            self.disconnects.append(reason)
            self._close(node, index_of[peer_feed])

    def _arrive(self, conn: Conn, src: int, dst: int, message: WireMessage, size: int) -> None:
        if not conn.open:
            return
        node = self.nodes[dst]
        node.received_bytes += size
        router = node.router
        assert router is not None
        kind = type(message)
        if kind is EntryMessage:
            assert isinstance(message, EntryMessage)
            index = self.post_of[message.entry]
            node.copies[index] = node.copies.get(index, 0) + 1
            router.handle_entry(
                self.nodes[src].feed, self.posts[index].entry_id, message, self.now
            )
        elif kind is Heads:
            assert isinstance(message, Heads)
            self._on_heads(node, src, conn, message)
        elif kind is Want:
            assert isinstance(message, Want)
            self._serve(node, src, conn, message)
        elif kind is EntryBatch:
            assert isinstance(message, EntryBatch)
            self._on_batch(node, src, message)
        else:
            router.handle(self.nodes[src].feed, message, self.now)  # type: ignore[arg-type]
        self._flush(node)

    # --- entries -------------------------------------------------------------------

    def _post(self, author: int | None = None) -> None:
        """An online author posts: ``author``, or one drawn by weight; droppers
        do not post."""
        node = None
        for _ in range(1 if author is not None else 100):
            index = author
            if index is None:
                index = next_index(self._author_cum, self.rng.random() * self._author_cum[-1])
            candidate = self.nodes[index]
            if candidate.online and not candidate.dropper:
                node = candidate
                break
        if node is None:
            return
        if node.key is None:
            node.key = Ed25519PrivateKey.from_private_bytes(node.seed)
        log = self.logs[node.feed]
        seq = len(log) + 1
        prev = self.posts[self.post_of[log[-1]]].entry_id if log else None
        words = self.rng.choices(_WORDS, k=self.rng.randint(4, 40))
        entry = create_entry(
            node.key,
            seq=seq,
            prev=prev,
            timestamp=_TIMESTAMP_BASE_MS + int(self.now * 1000),
            payload=Post(" ".join(words)),
        )
        raw = RawEntry(entry.header_bytes, entry.signature, entry.payload)
        # A post goes to its feed's topic and the square (Node._topics).
        message = EntryMessage((self.topic_of[node.index], SQUARE), raw)
        index = len(self.posts)
        self.posts.append(
            Published(
                index, node.index, seq, entry.id, message, self.now, self.sizes.size(message)
            )
        )
        self.post_of[raw] = index
        log.append(raw)
        node.heads[node.feed] = seq
        node.own_unheard, node.own_sought = True, False
        node.got[index] = (self.now, 0, GOSSIP)
        for planner in node.planners.values():
            planner.on_local_head(node.feed, seq)
        assert node.router is not None
        node.router.publish(entry.id, message, self.now)
        self._flush(node)

    def _judge(self, node: SimNode, epoch: int, delivery: Delivery) -> None:
        """The node's verdict on a delivered entry, after the validation delay."""
        if node.epoch != epoch:
            return
        post = self.posts[self.post_of[delivery.message.entry]]
        feed = self.nodes[post.author].feed
        verdict = Verdict.IGNORE
        if feed in node.scope:
            head = node.heads[feed]
            source = self.nodes[self.index_of[delivery.peer]].got.get(post.index)
            hops = source[1] + 1 if source is not None else -1
            if post.seq <= head:
                verdict = Verdict.ACCEPT  # held already (sync was first)
            elif post.seq == head + 1:
                self._store(node, post.index, GOSSIP, hops)
                node.heads[feed] = post.seq
                self._drain_gap(node, feed)
                verdict = Verdict.ACCEPT
            else:
                raw = delivery.message.entry
                if node.gaps.add(feed, post.seq, raw, self.now, head=head):
                    node.held_hops[post.index] = hops
                for peer, planner in node.planners.items():
                    if feed in node.shared[peer]:
                        planner.on_gap(feed, head + 1, post.seq - 1)
                    else:
                        self._unshared_gap(node, peer, feed, head + 1, post.seq - 1)
                for peer in list(node.planners):
                    self._pump(node, peer)
        assert node.router is not None
        node.router.validated(delivery.entry_id, verdict, self.now)
        self._flush(node)

    def _store(self, node: SimNode, index: int, how: int, hops: int) -> None:
        if index not in node.got:
            node.got[index] = (self.now, hops, how)

    def _drain_gap(self, node: SimNode, feed: bytes) -> None:
        """Store what the gap buffer holds that now extends the head, then tell
        the planners where the head is."""
        head = node.heads[feed]
        for raw in node.gaps.ready(feed, head):
            index = self.post_of[raw]
            self._store(node, index, HELD, node.held_hops.pop(index, -1))
            head = self.posts[index].seq
        node.heads[feed] = head
        for planner in node.planners.values():
            planner.on_local_head(feed, head)

    # --- sync ------------------------------------------------------------------------

    def _pump(self, node: SimNode, peer: int) -> None:
        """The node's sync loop for one peer: expire, send wants, set the wake-up."""
        planner = node.planners.get(peer)
        if planner is None:
            return
        conn = node.conns[peer]
        for problem in planner.expire(self.now):
            self.sync_problems[problem.fault.value] += 1
        for want in planner.next_requests(self.now):
            self._send(node, peer, conn, want)
        deadline = planner.next_deadline()
        if deadline is not None:
            pending = node.timers.get(peer)
            if pending is None or pending <= self.now or deadline < pending:
                node.timers[peer] = deadline
                self._at(deadline, self._sync_timer, node, node.epoch, peer, conn)

    def _sync_timer(self, node: SimNode, epoch: int, peer: int, conn: Conn) -> None:
        if node.epoch == epoch and conn.open:
            self._pump(node, peer)

    def _unshared_gap(self, node: SimNode, peer: int, feed: bytes, first: int, last: int) -> None:
        """What the node's planner does for a gap in a feed the peer does not
        replicate: ask for it, and get an empty answer. Counted, not sent."""
        if node.dropper or self.nodes[peer].dropper:
            return
        want = Want(0, feed, first, last, False)
        for message, (src, dst) in (
            (want, (node, self.nodes[peer])),
            (EntryBatch(0, (), True), (self.nodes[peer], node)),
        ):
            size = self.sizes.size(message)
            src.sent_bytes += size
            dst.received_bytes += size
            if self.measuring:
                self.bytes_by_type[message.type] += size
                self.messages_by_type[message.type] += 1

    def _on_heads(self, node: SimNode, src: int, conn: Conn, message: Heads) -> None:
        planner = node.planners.get(src)
        if planner is None:
            return
        scope = node.shared[src]
        # The planner's scope is the shared feeds: the others would only be
        # remembered, for a scope change that never comes here.
        planner.on_heads(Heads(tuple(pair for pair in message.heads if pair[0] in scope)))
        if not node.dropper:
            # Where we are ahead, the peer hears it now and can ask.
            for heads in planner.announce():
                self._send(node, src, conn, heads)
        self._pump(node, src)

    def _announce(self, node: SimNode) -> None:
        """Every ``HEADS_INTERVAL``: each planner's progress the peer should hear."""
        for peer, planner in node.planners.items():
            messages = planner.announce_progress()
            if messages and not node.dropper:
                conn = node.conns[peer]
                for heads in messages:
                    self._send(node, peer, conn, heads)

    def _serve(self, node: SimNode, src: int, conn: Conn, want: Want) -> None:
        if node.dropper:
            return
        if want.feed not in node.scope:
            self._send(node, src, conn, EntryBatch(want.request, (), True))
            return
        last = min(want.last, node.heads[want.feed], want.first + MAX_RANGE)
        rows = self.logs[want.feed][want.first - 1 : last]
        self._send(node, src, conn, answer(want, rows))

    def _on_batch(self, node: SimNode, src: int, batch: EntryBatch) -> None:
        planner = node.planners.get(src)
        if planner is None:
            return
        outcome = planner.on_batch(batch, self.now)
        for problem in outcome.problems:
            self.sync_problems[problem.fault.value] += 1
        self._pump(node, src)
        if outcome.feed is not None and outcome.entries:
            self._at(
                self.now + self.config.validation_delay,
                self._ingest,
                node,
                node.epoch,
                src,
                planner,
                outcome.feed,
                outcome.entries,
            )

    def _ingest(
        self,
        node: SimNode,
        epoch: int,
        src: int,
        planner: SyncPlanner,
        feed: bytes,
        entries: tuple[RawEntry, ...],
    ) -> None:
        """Store a sync batch (``Node._ingest_sync``), then what it unblocked."""
        if node.epoch != epoch:
            return
        head = node.heads[feed]
        source = self.nodes[src].got
        for raw in entries:
            index = self.post_of[raw]
            seq = self.posts[index].seq
            if seq == head + 1:
                held = source.get(index)
                self._store(node, index, SYNC, held[1] + 1 if held else -1)
                head = seq
        node.heads[feed] = head
        self._drain_gap(node, feed)
        for problem in planner.on_ingested(feed, node.heads[feed]):
            self.sync_problems[problem.fault.value] += 1
        self._pump(node, src)

    # --- heartbeats ------------------------------------------------------------------

    def _heartbeat(self, node: SimNode, epoch: int) -> None:
        if node.epoch != epoch:
            return
        assert node.router is not None
        node.router.heartbeat(self.now)
        node.gaps.expire(self.now)
        self._flush(node)
        if self.now >= node.next_heads:
            self._announce(node)
            node.next_heads = self.now + HEADS_INTERVAL
        self._at(self.now + self.params.heartbeat_interval, self._heartbeat, node, epoch)

    # --- structure ---------------------------------------------------------------------

    def _structure(self) -> dict[str, float]:
        """Connections and meshes when posting starts, and which follow pairs
        have no path of subscribers' connections to the author at all."""
        online = [node for node in self.nodes if node.online]
        degrees = sorted(len(node.conns) for node in online)
        pairs = thin = unreachable = 0
        d_low = self.params.d_low
        for feed in range(len(self.nodes)):
            followers = self.graph.followers[feed]
            if not followers:
                continue
            members = {feed, *followers}
            reached = {feed}
            frontier = [feed]
            while frontier:
                node = self.nodes[frontier.pop()]
                for peer in node.conns:
                    if peer in members and peer not in reached:
                        reached.add(peer)
                        frontier.append(peer)
            topic = self.topic_of[feed]
            for follower in followers:
                node = self.nodes[follower]
                if not node.online:
                    continue
                pairs += 1
                unreachable += follower not in reached
                assert node.router is not None
                thin += len(node.router.mesh(topic)) < d_low
        return {
            "pairs": pairs,
            "thin": thin,
            "unreachable": unreachable,
            "degree_mean": sum(degrees) / max(1, len(degrees)),
            "degree_median": degrees[len(degrees) // 2] if degrees else 0,
            "degree_max": degrees[-1] if degrees else 0,
        }


def next_index(cumulative: list[float], value: float) -> int:
    """The index whose cumulative weight first reaches ``value``."""
    return min(bisect.bisect_left(cumulative, value), len(cumulative) - 1)
