"""The gossip router: GossipSub v1.1 with v1.2's IDONTWANT and choking, without I/O.

A :class:`Router` is a pure state machine in the manner of h11. Inputs are
method calls (a peer came or went, a peer sent a message, the node joined a
topic, published an entry or judged one, a heartbeat is due); outputs wait in
queues until the driver takes them:

- :meth:`Router.drain`: ``(peer, message)`` pairs to send, in order;
- :meth:`Router.deliveries`: entries that arrived for the first time, which
  the node must judge and then report with :meth:`Router.validated`;
- :meth:`Router.disconnects`: peers to hang up on, with the reason.

The router never reads the clock (``now``, in seconds, comes with every
input), never draws randomness except from the ``random.Random`` it is given,
and never parses an entry: the driver computes entry ids
(:func:`storage.entry.entry_id`) and the node validates entries.

What the router does, after the libp2p GossipSub v1.1 specification:

- Each joined topic has a mesh, brought back to ``d`` peers at a heartbeat
  that finds fewer than ``d_low`` or more than ``d_high``. A valid entry is
  forwarded to the mesh peers of its topics, only once the node accepted it,
  and never to a peer that sent a copy.
- The heartbeat repairs meshes, prunes peers with a negative score, and
  advertises the entry ids of the last ``mcache_gossip`` windows (IHAVE) to
  ``d_lazy`` peers outside the mesh of each topic, drawn in one random order
  per heartbeat, so that one peer tends to hear about many topics at once:
  each peer gets at most one IHAVE per heartbeat, with an offer per topic. A
  peer answers with IWANT, and the router promises itself the entry within
  ``iwant_followup_time``.
- Own entries are flood-published to every subscribed peer above the
  publish threshold.
- PRUNE sets a backoff both ways; a GRAFT during backoff is penalised and
  refused.
- Choking (after the GossipSub v1.3 "choke" working draft and Episub): a
  mesh peer whose copies of a topic's entries keep arriving after another
  peer's is told CHOKE for that topic, and from then on announces what it
  has by IHAVE instead of pushing it: for the heartbeat's gossip, a mesh
  peer that choked us counts as outside the mesh. At each heartbeat,
  among the mesh peers that delivered entries of a topic since the last one,
  the ``d_unchoked`` that delivered earliest stay unchoked (``d_unchoked_shared``
  in the square, where anyone posts); the others that delivered only
  duplicates are choked. In the topic of a feed whose author is a peer
  subscribed to it, every mesh peer but the author is choked from the first
  heartbeat on: the author flood-publishes to us, so no one else can deliver
  first. In another feed topic that has carried nothing yet, all but
  ``d_unchoked_cold`` random mesh peers are choked (there is nothing to learn
  from, and the whole mesh would push the first entry). A choked peer that
  announces an
  entry we have not yet seen was ahead of the peers pushing to us: it is
  unchoked at once. So is one where fewer unchoked mesh peers are left
  than the topic keeps. Joining or leaving a mesh clears choking both ways; own
  entries are flood-published whatever the chokes.
- IDONTWANT (v1.2): an entry with a payload of at least
  ``idontwant_min_size`` bytes that arrives for the first time is announced
  with IDONTWANT to the other mesh peers of its topics that may push it to
  us (those we have not choked) at once, before the node judges it, and a
  peer's IDONTWANT keeps those ids from being sent to it. So does its IHAVE
  (not in the specification): a peer that has an entry needs neither the
  entry nor our IHAVE of it.
- Scores (:meth:`Router.score`): first deliveries earn a little; invalid
  entries (squared), broken IWANT promises, IWANT floods, grafts during
  backoff, grafts repeated within a heartbeat, floods of CHOKE and UNCHOKE,
  and talking while graylisted
  (all squared, as the spec's P7) cost a lot; every counter decays at each
  heartbeat. Below 0 a peer leaves the
  meshes, below ``gossip_threshold`` it gets and gives no gossip, below
  ``publish_threshold`` it gets no own entries, below ``graylist_threshold``
  its messages are dropped unread, and below ``disconnect_threshold`` it is
  reported once through :meth:`Router.disconnects` and then ignored.

Every structure a peer's input can grow is bounded by a :class:`RouterParams`
field. Peers are 32-byte identities; the driver bounds how many there are.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from storage.errors import InvalidArgument

from .wire import (
    MAX_BACKOFF,
    MAX_IDS,
    MAX_TOPICS,
    SQUARE,
    Choke,
    EntryMessage,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Prune,
    Subscribe,
    Unchoke,
    Unsubscribe,
    feed_topic,
    topic_feed,
)

__all__ = [
    "ControlMessage",
    "Delivery",
    "GossipMessage",
    "Router",
    "RouterParams",
    "RouterStats",
    "Verdict",
]

#: The messages :meth:`Router.handle` takes.
ControlMessage = (
    Subscribe | Unsubscribe | Graft | Prune | IHave | IWant | IDontWant | Choke | Unchoke
)
#: The messages the router sends and takes (entries through :meth:`Router.handle_entry`).
GossipMessage = ControlMessage | EntryMessage

_ID_SIZE: Final = 32
#: The arrival rank counted for a copy of an entry whose copies are no longer
#: counted (it left the message cache): late, whatever came before it.
_LATE_RANK: Final = 8


@dataclass(frozen=True, slots=True)
class RouterParams:
    """Tuning of one router. The defaults are those of DESIGN.md and GossipSub v1.1.

    Copies of an entry from several mesh peers are what choking saves
    (``d_unchoked``): in a mesh of degree 6 to 12 every node receives the
    entry from most of its mesh peers, since each forwards it before hearing
    that the others have it. With choking, a node receives about
    ``d_unchoked`` copies of each entry of a topic once the topic has carried
    a few, and the mesh keeps its degree (its paths, scores and repair). An
    IDONTWANT per entry did the same for small entries at the price of a
    message to every mesh peer for every entry (two thirds of all messages in
    a 100-node swarm on one machine), so it is kept for large payloads, as
    DESIGN.md and v1.2 say.

    Raises :class:`InvalidArgument` for an inconsistent set (for example
    ``d_low > d``, or thresholds out of order).
    """

    # Mesh degree: repaired to ``d`` when below ``d_low`` or above ``d_high``;
    # the ``d_score`` best scored peers survive an over-full mesh.
    d: int = 6
    d_low: int = 4
    d_high: int = 12
    d_score: int = 4
    # Gossip goes to max(d_lazy, gossip_factor * eligible) peers per topic.
    d_lazy: int = 6
    gossip_factor: float = 0.25
    #: How often the driver should call :meth:`Router.heartbeat`, in seconds.
    heartbeat_interval: float = 1.0
    # Message cache: answers IWANT for mcache_len heartbeats, advertised for
    # the last mcache_gossip; at most mcache_window_max entries per heartbeat.
    mcache_len: int = 5
    mcache_gossip: int = 3
    mcache_window_max: int = 4096
    # Seen cache: ids of accepted (and ignored) entries, so each is delivered once.
    seen_ttl: float = 120.0
    seen_max: int = 65536
    # Entries handed to the node and not yet judged; dropped after the timeout.
    max_pending: int = 1024
    validation_timeout: float = 30.0
    # Seconds a pruned peer and we keep from grafting each other; a GRAFT
    # sooner than graft_flood_threshold after the PRUNE costs double.
    prune_backoff: int = 60
    graft_flood_threshold: float = 10.0
    # IHAVE/IWANT: a peer must send what we asked for within iwant_followup_time.
    iwant_followup_time: float = 3.0
    max_ihave_messages: int = 10  # IHAVEs heeded per peer and heartbeat
    max_iwant_ids: int = 512  # ids asked of one peer per heartbeat
    max_ihave_ids: int = MAX_IDS  # ids advertised per topic and peer per heartbeat
    max_iwant_per_id: int = 3  # answers per id and peer per heartbeat
    # Ids heeded in one peer's IWANTs per heartbeat: twice what we ask of one
    # peer (max_iwant_ids, after IHAVEs and invalid copies alike), so that a
    # peer with our parameters never comes near. Each IWANT past it is a
    # flood, penalised even below gossip_threshold (where none is answered).
    max_iwant_heeded: int = 1024
    # GRAFTs for one topic heeded from one peer per heartbeat: a correct peer
    # sends one per time it joins our mesh. Each one past it is a flood.
    max_grafts_per_topic: int = 2
    # IDONTWANT: sent for entries with a payload of at least idontwant_min_size
    # bytes (0: every entry, a deleted payload included).
    idontwant_min_size: int = 2048
    # IDONTWANTs heeded per peer and heartbeat: as many as go-libp2p allows
    # (v1.2), not a cap a busy topic would reach.
    max_idontwant_messages: int = 1000
    # Choking: mesh peers per topic that keep pushing entries to us (the
    # earliest deliverers); False: never choke (chokes received are heeded).
    choking: bool = True
    # One in a feed's topic: there only its author publishes, so each node's
    # earliest deliverer lies on a fastest path from the author and the
    # pushers form a tree. bench/propagate.py (100 nodes, one process) spent
    # 19% less CPU than with two, and p99 fell from ~0.5 s to ~0.2 s; the
    # simulation delivered 100% at 1,000 nodes either way (docs/scaling.md).
    d_unchoked: int = 1
    # In the square anyone publishes: the earliest deliverer differs by
    # author, and with one pusher each, two nodes could keep only each other
    # and hear new entries by gossip alone (a round trip of a heartbeat).
    d_unchoked_shared: int = 2
    # Pushers kept in a feed topic before it carried anything: with nothing
    # to learn from, every mesh peer would push the first entry. Four random
    # ones still reach every follower: bench/simulate.py at 10,000 nodes,
    # redundancy 3.05 -> 2.01 (quiet), hops p99 6 -> 7 and latency p99 243 ->
    # 317 ms; with three, hops p99 under churn was 9 (docs/scaling.md).
    # 0: keep them all until the first entry.
    d_unchoked_cold: int = 4
    # CHOKE and UNCHOKE messages heeded per peer and heartbeat: each past it
    # is a flood. Ours go out about one of each per peer and heartbeat (more
    # when a peer's topics fill several messages, and heartbeats of two nodes
    # are not in step), so the bound leaves room.
    max_choke_messages: int = 10
    max_dont_send: int = 4096  # ids remembered per peer (from its IDONTWANTs and IHAVEs)
    dont_send_ttl: float = 10.0
    #: Topics remembered per peer (its subscriptions).
    max_peer_topics: int = 2048
    # A departed peer's score is kept this long, so reconnecting does not clear it.
    retain_score: float = 600.0
    max_retained: int = 4096
    # Score = first_weight * first + invalid_weight * invalid**2
    #       + behaviour_weight * max(0, behaviour - behaviour_threshold)**2
    first_weight: float = 0.5
    first_cap: float = 20.0
    first_decay: float = 0.99
    invalid_weight: float = -10.0
    invalid_decay: float = 0.99
    behaviour_weight: float = -5.0
    behaviour_threshold: float = 1.0
    behaviour_decay: float = 0.99
    decay_to_zero: float = 0.01
    #: Behaviour penalty per message from a graylisted peer, so that one that
    #: keeps talking sinks to the disconnect threshold.
    graylisted_message_penalty: float = 0.5
    gossip_threshold: float = -10.0
    publish_threshold: float = -20.0
    graylist_threshold: float = -40.0
    disconnect_threshold: float = -100.0

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.d_low <= self.d <= self.d_high, "1 <= d_low <= d <= d_high"),
            (0 <= self.d_score <= self.d, "0 <= d_score <= d"),
            (1 <= self.d_unchoked <= self.d, "1 <= d_unchoked <= d"),
            (1 <= self.d_unchoked_shared <= self.d, "1 <= d_unchoked_shared <= d"),
            (0 <= self.d_unchoked_cold <= self.d, "0 <= d_unchoked_cold <= d"),
            (self.d_lazy >= 0 and 0.0 <= self.gossip_factor <= 1.0, "d_lazy, gossip_factor"),
            (1 <= self.mcache_gossip <= self.mcache_len, "1 <= mcache_gossip <= mcache_len"),
            (0 <= self.prune_backoff <= MAX_BACKOFF, f"0 <= prune_backoff <= {MAX_BACKOFF}"),
            (1 <= self.max_ihave_ids <= MAX_IDS, f"1 <= max_ihave_ids <= {MAX_IDS}"),
            (
                self.disconnect_threshold
                < self.graylist_threshold
                < self.publish_threshold
                <= self.gossip_threshold
                <= 0.0,
                "disconnect < graylist < publish <= gossip <= 0",
            ),
            (
                self.first_weight >= 0.0
                and self.invalid_weight < 0.0
                and self.behaviour_weight < 0.0,
                "first_weight >= 0 > invalid_weight, behaviour_weight",
            ),
            (
                all(
                    0.0 < decay <= 1.0
                    for decay in (self.first_decay, self.invalid_decay, self.behaviour_decay)
                ),
                "decays in (0, 1]",
            ),
        ]
        for ok, rule in checks:
            if not ok:
                raise InvalidArgument(f"router parameters break the rule {rule}")
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name.startswith(("max_", "mcache_", "seen_max")) and value < 1:
                raise InvalidArgument(f"router parameter {spec.name} must be at least 1")
            if isinstance(value, float) and math.isnan(value):
                raise InvalidArgument(f"router parameter {spec.name} is NaN")


class Verdict(enum.Enum):
    """The node's judgement of a delivered entry (GossipSub's extended validation)."""

    #: Valid: remembered, forwarded to the mesh, and its sender earns credit.
    ACCEPT = "accept"
    #: Invalid (bad signature, chain, size, kind, or topics that do not fit
    #: the entry): never forwarded; the sender and any peer that sent the
    #: same bytes are penalised, and the id is forgotten so that a genuine
    #: copy under the same id can still be delivered.
    REJECT = "reject"
    #: Not judged now (ahead of a gap, out of scope): remembered so it is not
    #: delivered again, not forwarded, no one's score changes.
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class Delivery:
    """An entry that arrived from ``peer`` for the first time: the node must
    judge it and call :meth:`Router.validated` with ``entry_id``."""

    peer: bytes
    entry_id: bytes
    message: EntryMessage


@dataclass(frozen=True, slots=True)
class RouterStats:
    """Sizes of the router's state, for status displays and tests."""

    peers: int
    joined: int
    mesh_links: int
    peer_topics: int
    seen: int
    pending: int
    cached: int
    promises: int
    asked: int
    backoffs: int
    dont_send: int
    retained: int
    #: (topic, peer) pairs we choked, and that choked us.
    choking: int = 0
    choked_by: int = 0


# --- internal state -------------------------------------------------------------


@dataclass(slots=True)
class _Score:
    """The decaying counters behind a peer's score."""

    first: float = 0.0
    invalid: float = 0.0
    behaviour: float = 0.0


@dataclass(slots=True)
class _Peer:
    score: _Score
    topics: set[str] = field(default_factory=set)
    # id -> expiry; insertion order is expiry order, so the oldest goes first.
    dont_send: dict[bytes, float] = field(default_factory=dict)
    # Counters reset at each heartbeat.
    ihaves: int = 0
    idontwants: int = 0
    asked: int = 0
    served: dict[bytes, int] = field(default_factory=dict)
    wanted: int = 0  # ids in its IWANTs
    grafts: dict[str, int] = field(default_factory=dict)  # GRAFTs by joined topic
    chokes: int = 0  # CHOKE and UNCHOKE messages
    # Its copies of entries by mesh topic: [copies, sum of arrival ranks,
    # first copies], the rank of a copy being how many arrived before it.
    delivered: dict[str, list[int]] = field(default_factory=dict)
    # Mesh topics it pushed (not its own entries) although we choked it there.
    pushed_choked: set[str] = field(default_factory=set)
    # Reported through disconnects(): everything from and to it stops.
    doomed: bool = False
    connected: float = 0.0  # when this connection came up


@dataclass(slots=True)
class _Pending:
    """An entry handed to the node, waiting for its verdict."""

    source: bytes
    message: EntryMessage
    since: float
    # Peers that sent a copy, whichever: not sent the entry when it is accepted.
    holders: dict[bytes, None] = field(default_factory=dict)
    # Peers that sent the very same message while it was judged: if it is
    # invalid, they sent an invalid entry too.
    same: dict[bytes, None] = field(default_factory=dict)
    # The first differing copy under the same id (the entry id does not cover
    # the payload or the topics), judged next if this one is rejected.
    alternate: tuple[bytes, EntryMessage] | None = None
    told: tuple[bytes, ...] = ()  # mesh peers we sent IDONTWANT to


class _Link(enum.Enum):
    """Where a peer stands in one of our topics."""

    UNJOINED = "unjoined"  # we are not in the topic
    MESH = "mesh"
    BACKOFF = "backoff"  # pruned lately, by either side
    OUTSIDE = "outside"


class _Act(enum.Enum):
    IGNORE = "ignore"
    ACCEPT = "accept"
    REFUSE_AND_PENALISE = "refuse-and-penalise"
    LEAVE_MESH = "leave-mesh"


# What a GRAFT or PRUNE from a peer does, by where the peer stands.
_ON_GRAFT: Final = {
    # v1.1: a GRAFT for a topic we are not in is ignored; answering it would
    # let a peer make us send a PRUNE per GRAFT.
    _Link.UNJOINED: _Act.IGNORE,
    _Link.MESH: _Act.IGNORE,
    _Link.BACKOFF: _Act.REFUSE_AND_PENALISE,
    _Link.OUTSIDE: _Act.ACCEPT,
}
_ON_PRUNE: Final = {
    _Link.UNJOINED: _Act.IGNORE,
    _Link.MESH: _Act.LEAVE_MESH,
    _Link.BACKOFF: _Act.LEAVE_MESH,
    _Link.OUTSIDE: _Act.LEAVE_MESH,
}


def _chunks(items: Sequence[Any], size: int) -> Iterable[tuple[Any, ...]]:
    for start in range(0, len(items), size):
        yield tuple(items[start : start + size])


def _ihave_messages(offers: Sequence[tuple[str, tuple[bytes, ...]]]) -> list[IHave]:
    """``(topic, ids)`` offers (each of at most MAX_IDS ids) packed into as few
    IHAVE messages as the wire allows."""
    messages: list[IHave] = []
    batch: list[tuple[str, tuple[bytes, ...]]] = []
    size = 0
    for topic, ids in offers:
        if batch and (size + len(ids) > MAX_IDS or len(batch) == MAX_TOPICS):
            messages.append(IHave(tuple(batch)))
            batch, size = [], 0
        batch.append((topic, ids))
        size += len(ids)
    if batch:
        messages.append(IHave(tuple(batch)))
    return messages


def _drop_expired(expiries: dict[bytes, float], now: float) -> None:
    """Remove the keys whose expiry has come from ``expiries``, a dict whose
    insertion order is expiry order."""
    while expiries:
        key = next(iter(expiries))
        if expiries[key] > now:
            return
        del expiries[key]


def _check_id(entry_id: bytes) -> None:
    if len(entry_id) != _ID_SIZE:
        raise InvalidArgument(f"an entry id is {_ID_SIZE} bytes, not {len(entry_id)}")


class Router:
    """The gossip state of one node. See the module docstring for the model.

    ``me`` is this node's identity (a peer may not have it); ``rng`` makes
    every random choice (mesh members, gossip targets, tracked promises), so
    a seeded one makes a run reproducible.

    Calls with an unknown peer, a known peer added twice, a malformed entry
    id or a message of the wrong kind are the caller's mistakes and raise
    :class:`InvalidArgument`. Nothing a peer sends raises.
    """

    def __init__(self, me: bytes, params: RouterParams, rng: random.Random) -> None:
        self._me = me
        self._p = params
        self._rng = rng
        self._peers: dict[bytes, _Peer] = {}
        # Joined topics and their meshes (dicts as ordered sets, so that a
        # seeded rng gives the same run whatever the hash seed).
        self._joined: dict[str, dict[bytes, None]] = {}
        # (peer, topic) -> (since, until)
        self._backoff: dict[tuple[bytes, str], tuple[float, float]] = {}
        self._seen: dict[bytes, float] = {}  # id -> expiry, oldest first
        self._pending: dict[bytes, _Pending] = {}
        #: Peers that entered a mesh since the last gossip, by topic: entries
        #: forwarded before they joined are offered to them in the next IHAVE.
        self._new_in_mesh: dict[str, set[bytes]] = {}
        self._cache: dict[bytes, tuple[EntryMessage, bytes | None]] = {}  # id -> (entry, source)
        # Copies of each cached entry received so far (the rank of the next).
        self._copies: dict[bytes, int] = {}
        self._windows: deque[list[bytes]] = deque([[]])
        # Per joined topic: the mesh peers we choked, and those that choked us.
        self._choking: dict[str, dict[bytes, None]] = {}
        # Joined topics in which a mesh peer delivered an entry.
        self._carried: set[str] = set()
        self._choked_by: dict[str, set[bytes]] = {}
        self._promises: dict[bytes, dict[bytes, float]] = {}  # id -> {peer: deadline}
        # id -> until: asked of a peer lately, so other peers' IHAVEs wait.
        self._asked: dict[bytes, float] = {}
        self._retained: dict[bytes, tuple[_Score, float]] = {}  # peer -> (score, expiry)
        self._outbox: list[tuple[bytes, GossipMessage]] = []
        self._delivered: list[Delivery] = []
        self._hangups: list[tuple[bytes, str]] = []

    # --- outputs ----------------------------------------------------------------

    def drain(self) -> list[tuple[bytes, GossipMessage]]:
        """Messages to send since the last call, in order; each to a peer known
        at the time it was queued (messages to a removed peer are dropped).
        A message that goes to several peers at once (an entry forwarded to
        the mesh, an IDONTWANT) is one object, so a driver may encode it once."""
        out, self._outbox = self._outbox, []
        return out

    def deliveries(self) -> list[Delivery]:
        """Entries received since the last call. Each id appears once, unless the
        node rejected an earlier copy (then a differing copy may follow)."""
        out, self._delivered = self._delivered, []
        return out

    def disconnects(self) -> list[tuple[bytes, str]]:
        """Peers to disconnect, each reported once with a reason for the log.
        The router ignores them from now on; the driver still calls
        :meth:`remove_peer` once the connection is closed."""
        out, self._hangups = self._hangups, []
        return out

    # --- inspection -------------------------------------------------------------

    def score(self, peer: bytes) -> float:
        """The current score of a connected peer (0 for a new one)."""
        return self._score_of(self._state(peer).score)

    def mesh(self, topic: str) -> frozenset[bytes]:
        """Our mesh peers in ``topic`` (empty if we have not joined it)."""
        return frozenset(self._joined.get(topic, ()))

    def wants(self, peer: bytes, entry_id: bytes) -> bool:
        """Whether ``peer`` may still want the entry: false once it sent IDONTWANT
        for it. A driver that queues messages checks this just before it writes
        a queued entry, so that a late IDONTWANT still saves the bytes."""
        state = self._peers.get(peer)
        return state is not None and not state.doomed and entry_id not in state.dont_send

    def choked(self, topic: str) -> frozenset[bytes]:
        """The mesh peers we choked in ``topic``: they announce its entries
        to us instead of pushing them."""
        return frozenset(self._choking.get(topic, ()))

    def choked_by(self, topic: str) -> frozenset[bytes]:
        """The mesh peers that choked us in ``topic``: we announce its
        entries to them instead of pushing them."""
        return frozenset(self._choked_by.get(topic, ()))

    @property
    def joined(self) -> frozenset[str]:
        """The topics we have joined."""
        return frozenset(self._joined)

    def judged(self, entry_id: bytes) -> bool:
        """Whether the node's verdict on ``entry_id`` was accepted or ignored
        (and it is still in the seen cache), rather than awaited or unknown."""
        return entry_id in self._seen

    def stats(self) -> RouterStats:
        """The sizes of the router's state."""
        return RouterStats(
            peers=len(self._peers),
            joined=len(self._joined),
            mesh_links=sum(len(mesh) for mesh in self._joined.values()),
            peer_topics=sum(len(state.topics) for state in self._peers.values()),
            seen=len(self._seen),
            pending=len(self._pending),
            cached=len(self._cache),
            promises=sum(len(owed) for owed in self._promises.values()),
            asked=len(self._asked),
            backoffs=len(self._backoff),
            dont_send=sum(len(state.dont_send) for state in self._peers.values()),
            retained=len(self._retained),
            choking=sum(len(peers) for peers in self._choking.values()),
            choked_by=sum(len(peers) for peers in self._choked_by.values()),
        )

    # --- peers and topics -------------------------------------------------------

    def add_peer(self, peer: bytes, now: float) -> None:
        """A connection to ``peer`` is up: tell it our topics.

        A peer that left with a score keeps it (for ``retain_score`` s); one
        that comes back below ``disconnect_threshold`` is told nothing and
        reported through :meth:`disconnects` at once.
        Raises :class:`InvalidArgument` for ourselves or a peer already added.
        """
        if peer == self._me or peer in self._peers:
            raise InvalidArgument("this peer is ourselves or was added already")
        retained = self._retained.pop(peer, None)
        state = self._peers[peer] = _Peer(retained[0] if retained else _Score(), connected=now)
        score = self._score_of(state.score)
        if score < self._p.disconnect_threshold:
            state.doomed = True
            self._hangups.append((peer, f"came back with score {score:.1f}"))
            return
        for topics in _chunks(list(self._joined), MAX_TOPICS):
            self._send(peer, Subscribe(topics))

    def remove_peer(self, peer: bytes, now: float) -> None:
        """The connection to ``peer`` is gone. Messages queued for it, and a
        disconnect of it not yet taken, are dropped.

        Raises :class:`InvalidArgument` for a peer that is not connected.
        """
        state = self._state(peer)
        del self._peers[peer]
        self._forget_peer(peer)
        self._outbox = [(to, message) for to, message in self._outbox if to != peer]
        self._hangups = [(to, reason) for to, reason in self._hangups if to != peer]
        score = state.score
        if score.first or score.invalid or score.behaviour:
            self._retain(peer, score, now)

    def join(self, topic: str, now: float) -> None:
        """Subscribe to ``topic``: announce it to every peer and graft up to ``d``
        of its subscribers. Joining a joined topic does nothing."""
        if topic in self._joined:
            return
        mesh: dict[bytes, None] = {}
        self._joined[topic] = mesh
        self._choking[topic] = {}
        self._choked_by[topic] = set()
        for peer in self._live():
            self._send(peer, Subscribe((topic,)))
        candidates = self._graft_candidates(topic, mesh, now)
        for peer in self._rng.sample(candidates, min(self._p.d, len(candidates))):
            self._enmesh(topic, peer)
            self._send(peer, Graft(topic))

    def leave(self, topic: str, now: float) -> None:
        """Unsubscribe from ``topic``: prune its mesh (with backoff) and tell
        every peer. Leaving a topic we are not in does nothing."""
        mesh = self._joined.pop(topic, None)
        if mesh is None:
            return
        del self._choking[topic], self._choked_by[topic]
        self._carried.discard(topic)
        for peer in mesh:
            self._prune(peer, topic, now)
        for peer in self._live():
            self._send(peer, Unsubscribe((topic,)))

    # --- entries ----------------------------------------------------------------

    def publish(self, entry_id: bytes, message: EntryMessage, now: float) -> None:
        """Send our own entry to every peer subscribed to one of its topics (or
        in its mesh) whose score is at least ``publish_threshold``.

        An entry already seen is not sent again. Raises :class:`InvalidArgument`
        for an id that is not 32 bytes.
        """
        _check_id(entry_id)
        if entry_id in self._seen:
            return
        # Ours, so valid: a copy a peer sent first needs no verdict any more.
        self._pending.pop(entry_id, None)
        self._remember(entry_id, now)
        # Any copy a peer sends back is a duplicate: ours came first.
        self._keep(entry_id, message, None, 1)
        for peer, state in self._peers.items():
            if state.doomed or self._score_of(state.score) < self._p.publish_threshold:
                continue
            if any(t in state.topics or peer in self._joined.get(t, ()) for t in message.topics):
                self._send(peer, message)

    def handle_entry(
        self, peer: bytes, entry_id: bytes, message: EntryMessage, now: float
    ) -> None:
        """An entry from ``peer``; ``entry_id`` is its id as the driver computed it.

        A new entry in one of our topics becomes a :class:`Delivery` (nothing
        is forwarded before :meth:`validated`) and is announced with IDONTWANT
        to the other mesh peers of its topics that may push it to us (if its
        payload has at least ``idontwant_min_size`` bytes). Copies of a seen
        or pending entry, and entries in no topic of ours, are dropped; every
        copy from a mesh peer counts in its delivery record (choking).
        Raises :class:`InvalidArgument` for an unknown peer or an id that is
        not 32 bytes.
        """
        state = self._state(peer)
        _check_id(entry_id)
        if not self._listening(peer, state):
            return
        # Whichever copy it is, the entry arrived: the promises for it are kept.
        self._promises.pop(entry_id, None)
        self._asked.pop(entry_id, None)
        if entry_id in self._seen:
            copies = self._copies.get(entry_id)
            if copies is not None:
                self._copies[entry_id] = copies + 1
            self._note_copy(peer, state, message, _LATE_RANK if copies is None else copies)
            return
        pending = self._pending.get(entry_id)
        if pending is not None:
            if peer in pending.holders:
                return
            self._note_copy(peer, state, message, len(pending.holders))
            pending.holders[peer] = None
            if message == pending.message:
                pending.same[peer] = None
            elif pending.alternate is None:
                pending.alternate = (peer, message)
            return
        if not any(topic in self._joined for topic in message.topics):
            return
        if len(self._pending) >= self._p.max_pending:
            # Not remembered: a later copy (or sync) brings it once the node caught up.
            return
        self._note_copy(peer, state, message, 0)
        pending = _Pending(peer, message, now, holders={peer: None})
        self._pending[entry_id] = pending
        self._delivered.append(Delivery(peer, entry_id, message))
        payload = message.entry.payload
        if len(payload or b"") >= self._p.idontwant_min_size:
            told = tuple(p for p in self._pushers(message.topics) if p != peer)
            idontwant = IDontWant((entry_id,))
            for to in told:
                self._send(to, idontwant)
            pending.told = told

    def validated(self, entry_id: bytes, verdict: Verdict, now: float) -> None:
        """The node's verdict on a delivered entry (see :class:`Verdict`).

        An accepted entry is forwarded to the mesh peers of its topics except
        those known to have it or not to want it. An id not awaiting a
        verdict (judged already, timed out, or never delivered) is ignored.
        """
        pending = self._pending.pop(entry_id, None)
        if pending is None:
            return
        if verdict is Verdict.IGNORE:
            self._remember(entry_id, now)
        elif verdict is Verdict.ACCEPT:
            self._remember(entry_id, now)
            self._keep(entry_id, pending.message, pending.source, len(pending.holders))
            self._credit(pending.source)
            for peer in self._push_to(pending.message.topics):
                if peer not in pending.holders and entry_id not in self._peers[peer].dont_send:
                    self._send(peer, pending.message)
        else:
            for peer in (pending.source, *pending.same):
                if peer not in self._peers and peer not in self._retained:
                    self._retain(peer, _Score(), now)  # gone before the verdict
                self._penalise(peer, "sent an invalid entry", invalid=1.0)
            if pending.alternate is not None:
                source, message = pending.alternate
                self._pending[entry_id] = _Pending(
                    source, message, now, holders=pending.holders, told=pending.told
                )
                self._delivered.append(Delivery(source, entry_id, message))
            else:
                # We told these peers not to send the entry, and the copy we
                # had was bad: ask them for theirs (no promise: they may not
                # have it). Within what we ask of a peer per heartbeat, or a
                # flood of forgeries would make us an IWANT flooder to them.
                for peer in pending.told:
                    state = self._peers.get(peer)
                    if state is not None and state.asked < self._p.max_iwant_ids:
                        state.asked += 1
                        self._send(peer, IWant((entry_id,)))

    def penalise(
        self, peer: bytes, why: str, *, invalid: float = 0.0, behaviour: float = 0.0
    ) -> None:
        """Score ``peer`` down for a fault the driver found outside gossip
        (sync: entries that fail their checks count as ``invalid``, breaches
        of the protocol as ``behaviour``), the same as the router's own
        penalties; past ``disconnect_threshold`` the peer is hung up on with
        ``why``. An unknown peer is ignored (its retained score, if any, takes
        the penalty). Raises :class:`InvalidArgument` for a negative amount.
        """
        if invalid < 0.0 or behaviour < 0.0:
            raise InvalidArgument("penalties are not negative")
        self._penalise(peer, why, invalid=invalid, behaviour=behaviour)

    # --- control messages -------------------------------------------------------

    def handle(self, peer: bytes, message: ControlMessage, now: float) -> None:
        """A control message from ``peer``. Hostile input is dropped or penalised.

        Raises :class:`InvalidArgument` for an unknown peer or a message that
        is not a control message (entries go to :meth:`handle_entry`).
        """
        state = self._state(peer)
        handler = _HANDLERS.get(type(message))
        if handler is None:
            raise InvalidArgument(f"the router does not take {type(message).__name__} here")
        if self._listening(peer, state):
            handler(self, peer, state, message, now)

    def _on_subscribe(self, peer: bytes, state: _Peer, message: Subscribe, now: float) -> None:
        for topic in message.topics:
            if len(state.topics) >= self._p.max_peer_topics:
                break
            state.topics.add(topic)

    def _on_unsubscribe(self, peer: bytes, state: _Peer, message: Unsubscribe, now: float) -> None:
        for topic in message.topics:
            state.topics.discard(topic)
            self._unmesh(topic, peer)

    def _on_graft(self, peer: bytes, state: _Peer, message: Graft, now: float) -> None:
        topic = message.topic
        if topic in self._joined:
            grafts = state.grafts[topic] = state.grafts.get(topic, 0) + 1
            if grafts > self._p.max_grafts_per_topic:
                self._penalise(peer, "grafted again and again", behaviour=1.0)
                return
        act = _ON_GRAFT[self._link(peer, topic, now)]
        if act is _Act.REFUSE_AND_PENALISE:
            since, _ = self._backoff[peer, topic]
            if since < state.connected:
                # The backoff began on an earlier connection: a peer that
                # restarted since cannot know it. Refused and told, from now.
                del self._backoff[peer, topic]
                self._prune(peer, topic, now)
                return
            flood = now - since < self._p.graft_flood_threshold
            self._penalise(peer, "grafted during backoff", behaviour=2.0 if flood else 1.0)
            self._prune(peer, topic, now)
        elif act is _Act.ACCEPT:
            if self._score_of(state.score) < 0:
                self._prune(peer, topic, now)
                return
            # Accepted even above d_high (v1.0): v1.1 refuses inbound peers
            # there, but the router does not know who dialled whom, and the
            # heartbeat trims the mesh keeping the best scored peers.
            self._enmesh(topic, peer)
            self._new_in_mesh.setdefault(topic, set()).add(peer)
            # A peer that grafts is in the topic, announced or not.
            if len(state.topics) < self._p.max_peer_topics:
                state.topics.add(topic)

    def _on_prune(self, peer: bytes, state: _Peer, message: Prune, now: float) -> None:
        topic = message.topic
        if _ON_PRUNE[self._link(peer, topic, now)] is _Act.LEAVE_MESH:
            self._unmesh(topic, peer)
            # As in go-libp2p, a backoff of 0 means the default one.
            self._back_off(peer, topic, now, message.backoff or self._p.prune_backoff)

    def _on_ihave(self, peer: bytes, state: _Peer, message: IHave, now: float) -> None:
        if self._score_of(state.score) < self._p.gossip_threshold:
            return
        state.ihaves += 1
        if state.ihaves > self._p.max_ihave_messages:
            return
        budget = self._p.max_iwant_ids - state.asked
        wanted: dict[bytes, None] = {}
        ahead: list[str] = []
        for topic, ids in message.offers:
            if topic not in self._joined:
                continue
            # The peer has these: neither the entries nor our IHAVEs of them need go to it.
            self._has(state, ids, now)
            new = False
            for entry_id in ids:
                if entry_id in self._seen or entry_id in self._pending:
                    continue
                new = True
                if len(wanted) < budget and self._asked.get(entry_id, now) <= now:
                    wanted[entry_id] = None
            if new and peer in self._choking[topic]:
                # It had an entry before any peer that pushes to us: let it push.
                del self._choking[topic][peer]
                ahead.append(topic)
        if ahead:
            self._send(peer, Unchoke(tuple(ahead)))
        if not wanted:
            return
        state.asked += len(wanted)
        # Another peer's IHAVE for these ids is heeded after one heartbeat: a
        # lost answer is retried while the ids are still advertised (gossip
        # covers mcache_gossip heartbeats, less than the follow-up time).
        retry = now + self._p.heartbeat_interval
        for entry_id in wanted:
            # Re-inserted, so that insertion order stays expiry order (_expire).
            self._asked.pop(entry_id, None)
            self._asked[entry_id] = retry
        deadline = now + self._p.iwant_followup_time
        asked = tuple(wanted)
        # v1.1 tracks one random id per IWANT: enough to catch a peer that
        # advertises what it will not send, whichever ids it sends.
        self._promises.setdefault(self._rng.choice(asked), {})[peer] = deadline
        self._send(peer, IWant(asked))

    def _on_iwant(self, peer: bytes, state: _Peer, message: IWant, now: float) -> None:
        state.wanted += len(message.ids)
        if state.wanted > self._p.max_iwant_heeded:
            self._penalise(peer, "asked for too many entries", behaviour=1.0)
            return
        if self._score_of(state.score) < self._p.gossip_threshold:
            return
        flooded = False
        for entry_id in message.ids:
            cached = self._cache.get(entry_id)
            if cached is None:
                continue
            count = state.served.get(entry_id, 0) + 1
            if count > self._p.max_iwant_per_id:
                flooded = True
                continue
            state.served[entry_id] = count
            self._send(peer, cached[0])
        if flooded:
            self._penalise(peer, "asked for the same entry too often", behaviour=1.0)

    def _on_idontwant(self, peer: bytes, state: _Peer, message: IDontWant, now: float) -> None:
        state.idontwants += 1
        if state.idontwants > self._p.max_idontwant_messages:
            return
        self._has(state, message.ids, now)

    def _on_choke(self, peer: bytes, state: _Peer, message: Choke, now: float) -> None:
        if self._heed_choke(peer, state):
            for topic in message.topics:
                mesh = self._joined.get(topic)
                # A peer outside our mesh pushes nothing to us, nor we to it.
                if mesh is not None and peer in mesh:
                    self._choked_by[topic].add(peer)

    def _on_unchoke(self, peer: bytes, state: _Peer, message: Unchoke, now: float) -> None:
        if self._heed_choke(peer, state):
            for topic in message.topics:
                if topic in self._choked_by:
                    self._choked_by[topic].discard(peer)

    def _heed_choke(self, peer: bytes, state: _Peer) -> bool:
        state.chokes += 1
        if state.chokes > self._p.max_choke_messages:
            self._penalise(peer, "choked and unchoked again and again", behaviour=1.0)
            return False
        return True

    def _has(self, state: _Peer, ids: Iterable[bytes], now: float) -> None:
        """The peer has (or does not want) ``ids``: send it neither them nor IHAVEs of them."""
        until = now + self._p.dont_send_ttl
        for entry_id in ids:
            state.dont_send.pop(entry_id, None)
            state.dont_send[entry_id] = until
        while len(state.dont_send) > self._p.max_dont_send:
            del state.dont_send[next(iter(state.dont_send))]

    # --- heartbeat --------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """Periodic upkeep, every ``heartbeat_interval`` seconds: penalise broken
        promises, decay scores, expire caches, repair meshes, choke and unchoke,
        emit gossip and shift the message cache."""
        broken = [
            peer
            for owed in self._promises.values()
            for peer, deadline in owed.items()
            if deadline <= now
        ]
        self._promises = {
            entry_id: kept
            for entry_id, owed in self._promises.items()
            if (kept := {peer: d for peer, d in owed.items() if d > now})
        }
        for peer in broken:
            self._penalise(peer, "did not send an entry it advertised", behaviour=1.0)
        self._decay()
        self._expire(now)
        chokes: dict[bytes, list[str]] = {}
        unchokes: dict[bytes, list[str]] = {}
        for topic, mesh in self._joined.items():
            self._maintain(topic, mesh, now)
            self._rechoke(topic, mesh, chokes, unchokes)
        for peer, topics in chokes.items():
            for chunk in _chunks(topics, MAX_TOPICS):
                self._send(peer, Choke(chunk))
        for peer, topics in unchokes.items():
            for chunk in _chunks(topics, MAX_TOPICS):
                self._send(peer, Unchoke(chunk))
        self._gossip()
        self._windows.append([])
        while len(self._windows) > self._p.mcache_len:
            for entry_id in self._windows.popleft():
                self._cache.pop(entry_id, None)
                self._copies.pop(entry_id, None)
        for state in self._peers.values():
            state.ihaves = state.idontwants = state.asked = state.wanted = state.chokes = 0
            state.served.clear()
            state.grafts.clear()
            state.delivered.clear()
            state.pushed_choked.clear()

    def _decay(self) -> None:
        p = self._p
        scores = [state.score for state in self._peers.values()]
        scores += [score for score, _ in self._retained.values()]
        for score in scores:
            score.first *= p.first_decay
            score.invalid *= p.invalid_decay
            score.behaviour *= p.behaviour_decay
            if score.first < p.decay_to_zero:
                score.first = 0.0
            if score.invalid < p.decay_to_zero:
                score.invalid = 0.0
            if score.behaviour < p.decay_to_zero:
                score.behaviour = 0.0

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order for the seen cache and pending entries.
        while self._seen and next(iter(self._seen.values())) <= now:
            del self._seen[next(iter(self._seen))]
        timeout = self._p.validation_timeout
        while self._pending and next(iter(self._pending.values())).since + timeout <= now:
            del self._pending[next(iter(self._pending))]
        # So is it for the ids asked for and each peer's don't-send set, which
        # hold thousands of ids at a busy node: trimmed from the oldest end,
        # the heartbeat costs what expired, not what is held.
        _drop_expired(self._asked, now)
        for state in self._peers.values():
            _drop_expired(state.dont_send, now)
        self._backoff = {k: span for k, span in self._backoff.items() if span[1] > now}
        self._retained = {k: kept for k, kept in self._retained.items() if kept[1] > now}

    def _maintain(self, topic: str, mesh: dict[bytes, None], now: float) -> None:
        p = self._p
        for peer in [peer for peer in mesh if self._score_of(self._peers[peer].score) < 0]:
            self._unmesh(topic, peer)
            self._prune(peer, topic, now)
        if len(mesh) < p.d_low:
            candidates = self._graft_candidates(topic, mesh, now)
            for peer in self._rng.sample(candidates, min(p.d - len(mesh), len(candidates))):
                self._enmesh(topic, peer)
                self._new_in_mesh.setdefault(topic, set()).add(peer)
                self._send(peer, Graft(topic))
        elif len(mesh) > p.d_high:
            ranked = list(mesh)
            self._rng.shuffle(ranked)  # ties broken at random (the sort is stable)
            ranked.sort(key=lambda peer: self._score_of(self._peers[peer].score), reverse=True)
            rest = ranked[p.d_score :]
            self._rng.shuffle(rest)
            # The best scored stay, so a flood of new peers cannot take the
            # mesh over; random others stay, so new peers get a chance.
            for peer in rest[p.d - p.d_score :]:
                self._unmesh(topic, peer)
                self._prune(peer, topic, now)

    def _rechoke(
        self,
        topic: str,
        mesh: dict[bytes, None],
        chokes: dict[bytes, list[str]],
        unchokes: dict[bytes, list[str]],
    ) -> None:
        """Choke the mesh peers of ``topic`` whose copies came late since the
        last heartbeat, keeping the ``d_unchoked`` earliest (and at least that
        many unchoked); before anything was learned, keep only the author if
        it is a peer, else ``d_unchoked_cold`` at random. Record the messages
        to send in ``chokes``/``unchokes``."""
        p = self._p
        pushers = p.d_unchoked_shared if topic == SQUARE else p.d_unchoked
        choking = self._choking[topic]
        author = self._direct_author(topic)
        if p.choking and author is not None:
            # The author sends each of its entries to every subscriber it is
            # connected to: no mesh peer can deliver one first, so every other
            # pusher would only send duplicates (the first entry of a feed
            # costs about half the mesh in copies before there is anything
            # to learn from). Announcements of a choked peer still arrive.
            for peer in mesh:
                if peer != author and peer not in choking:
                    self._choke(topic, peer, choking, chokes)
            self._choke_again(topic, choking, chokes)
            return
        if p.choking and p.d_unchoked_cold and topic != SQUARE and topic not in self._carried:
            # Nothing to learn from yet: keep a few pushers, at random.
            free = [peer for peer in mesh if peer not in choking]
            if len(free) > p.d_unchoked_cold:
                for peer in self._rng.sample(free, len(free) - p.d_unchoked_cold):
                    self._choke(topic, peer, choking, chokes)
            self._choke_again(topic, choking, chokes)
            self._unchoke_some(topic, p.d_unchoked_cold - len(free), choking, unchokes)
            return
        unchoked = len(mesh) - len(choking)
        if p.choking and unchoked > pushers:
            # The unchoked peers that delivered, by mean arrival rank (then
            # first copies, then at random): the earliest stay unchoked.
            delivering: list[tuple[float, int, float, bytes]] = []
            for peer in mesh:
                record = self._peers[peer].delivered.get(topic)
                if record is not None and peer not in choking:
                    mean_rank = record[1] / record[0]
                    delivering.append((mean_rank, -record[2], self._rng.random(), peer))
            delivering.sort()
            for *_, peer in delivering[pushers:]:
                if unchoked <= pushers:
                    break
                if self._peers[peer].delivered[topic][2] == 0:
                    self._choke(topic, peer, choking, chokes)
                    unchoked -= 1
        self._choke_again(topic, choking, chokes)
        self._unchoke_some(topic, pushers - unchoked, choking, unchokes)

    @staticmethod
    def _choke(
        topic: str, peer: bytes, choking: dict[bytes, None], chokes: dict[bytes, list[str]]
    ) -> None:
        choking[peer] = None
        chokes.setdefault(peer, []).append(topic)

    def _unchoke_some(
        self,
        topic: str,
        missing: int,
        choking: dict[bytes, None],
        unchokes: dict[bytes, list[str]],
    ) -> None:
        """Fewer pushers than wanted (peers left the mesh): take ``missing`` back."""
        if missing > 0 and choking:
            for peer in self._rng.sample(sorted(choking), min(missing, len(choking))):
                del choking[peer]
                unchokes.setdefault(peer, []).append(topic)

    def _choke_again(
        self, topic: str, choking: dict[bytes, None], chokes: dict[bytes, list[str]]
    ) -> None:
        """Tell CHOKE again to the choked peers that pushed ``topic`` anyway
        (once: one that was let push meanwhile and is choked anew already is)."""
        for peer in choking:
            if topic in self._peers[peer].pushed_choked:
                told = chokes.setdefault(peer, [])
                if topic not in told:
                    told.append(topic)

    def _direct_author(self, topic: str) -> bytes | None:
        """The author of feed topic ``topic`` if it is a peer subscribed to it."""
        author = topic_feed(topic)
        if author is None:
            return None
        state = self._peers.get(author)
        if state is None or state.doomed or topic not in state.topics:
            return None
        return author

    def _gossip(self) -> None:
        """IHAVE of the recent entries of each topic to ``d_lazy`` peers outside
        its mesh or that choked us, and to mesh peers new in it; each peer gets
        one IHAVE with an offer per topic."""
        p = self._p
        recent: dict[str, list[bytes]] = {}
        for window in list(self._windows)[-p.mcache_gossip :]:
            for entry_id in window:
                for topic in self._cache[entry_id][0].topics:
                    if topic in self._joined:
                        recent.setdefault(topic, []).append(entry_id)
        # One random order of the peers for the whole heartbeat: each topic
        # takes the first eligible peers in it, so the same peers tend to hear
        # of several topics, in one message each instead of one per topic.
        order = [
            peer
            for peer, state in self._peers.items()
            if not state.doomed and self._score_of(state.score) >= p.gossip_threshold
        ]
        self._rng.shuffle(order)
        offers: dict[bytes, list[tuple[str, tuple[bytes, ...]]]] = {}
        for topic, ids in recent.items():
            mesh = self._joined[topic]
            # Mesh peers that choked us get no pushes: they are gossiped to
            # like peers outside the mesh.
            lazy = self._choked_by[topic]
            # The first eligible peers in the order; all of them only when a
            # share of them (gossip_factor) could be more than d_lazy.
            enough = p.d_lazy if p.gossip_factor * len(order) < p.d_lazy + 1 else len(order)
            eligible: list[bytes] = []
            peers = self._peers
            for peer in order:
                if topic in peers[peer].topics and (peer not in mesh or peer in lazy):
                    eligible.append(peer)
                    if len(eligible) == enough:
                        break
            count = min(len(eligible), max(p.d_lazy, int(p.gossip_factor * len(eligible))))
            targets = dict.fromkeys(eligible[:count])
            # Mesh peers only get forwards, so one that joined the mesh after
            # an entry went round is offered it here, or it would never hear of it.
            fresh = self._new_in_mesh.get(topic, set()).intersection(mesh)
            targets.update(dict.fromkeys(peer for peer in order if peer in fresh))
            for peer in targets:
                dont_send = self._peers[peer].dont_send
                offer = [i for i in ids if i not in dont_send and self._cache[i][1] != peer]
                if len(offer) > p.max_ihave_ids:
                    offer = self._rng.sample(offer, p.max_ihave_ids)
                if offer:
                    offers.setdefault(peer, []).append((topic, tuple(offer)))
        for peer, topic_offers in offers.items():
            for message in _ihave_messages(topic_offers):
                self._send(peer, message)
        self._new_in_mesh.clear()

    # --- helpers ----------------------------------------------------------------

    def _state(self, peer: bytes) -> _Peer:
        state = self._peers.get(peer)
        if state is None:
            raise InvalidArgument("this peer is not connected")
        return state

    def _live(self) -> list[bytes]:
        return [peer for peer, state in self._peers.items() if not state.doomed]

    def _send(self, peer: bytes, message: GossipMessage) -> None:
        if not self._peers[peer].doomed:
            self._outbox.append((peer, message))

    def _listening(self, peer: bytes, state: _Peer) -> bool:
        """Whether a message from ``peer`` is to be read at all."""
        if state.doomed:
            return False
        if self._score_of(state.score) < self._p.graylist_threshold:
            self._penalise(
                peer,
                "kept sending while graylisted",
                behaviour=self._p.graylisted_message_penalty,
            )
            return False
        return True

    def _score_of(self, score: _Score) -> float:
        p = self._p
        excess = max(0.0, score.behaviour - p.behaviour_threshold)
        return (
            p.first_weight * score.first
            + p.invalid_weight * score.invalid * score.invalid
            + p.behaviour_weight * excess * excess
        )

    def _penalise(
        self, peer: bytes, why: str, *, invalid: float = 0.0, behaviour: float = 0.0
    ) -> None:
        state = self._peers.get(peer)
        if state is None:
            # Gone already (a late verdict): the retained score carries it.
            retained = self._retained.get(peer)
            if retained is not None:
                retained[0].invalid += invalid
                retained[0].behaviour += behaviour
            return
        state.score.invalid += invalid
        state.score.behaviour += behaviour
        score = self._score_of(state.score)
        if not state.doomed and score < self._p.disconnect_threshold:
            state.doomed = True
            self._forget_peer(peer)
            self._hangups.append((peer, f"{why} (score {score:.1f})"))

    def _retain(self, peer: bytes, score: _Score, now: float) -> None:
        self._retained[peer] = (score, now + self._p.retain_score)
        while len(self._retained) > self._p.max_retained:
            del self._retained[next(iter(self._retained))]

    def _credit(self, peer: bytes) -> None:
        state = self._peers.get(peer)
        if state is not None:
            state.score.first = min(self._p.first_cap, state.score.first + 1.0)

    def _forget_peer(self, peer: bytes) -> None:
        for topic in self._joined:
            self._unmesh(topic, peer)
        for entry_id in [i for i, owed in self._promises.items() if peer in owed]:
            del self._promises[entry_id][peer]
            if not self._promises[entry_id]:
                del self._promises[entry_id]

    def _unmesh(self, topic: str, peer: bytes) -> None:
        """``peer`` leaves our mesh of ``topic`` (if in it): choking ends both ways."""
        mesh = self._joined.get(topic)
        if mesh is None:
            return
        mesh.pop(peer, None)
        self._choking[topic].pop(peer, None)
        self._choked_by[topic].discard(peer)

    def _enmesh(self, topic: str, peer: bytes) -> None:
        """``peer`` joins our mesh of ``topic``, unchoked both ways."""
        self._joined[topic][peer] = None
        self._choking[topic].pop(peer, None)
        self._choked_by[topic].discard(peer)

    def _link(self, peer: bytes, topic: str, now: float) -> _Link:
        mesh = self._joined.get(topic)
        if mesh is None:
            return _Link.UNJOINED
        if peer in mesh:
            return _Link.MESH
        span = self._backoff.get((peer, topic))
        if span is not None and span[1] > now:
            return _Link.BACKOFF
        return _Link.OUTSIDE

    def _graft_candidates(self, topic: str, mesh: dict[bytes, None], now: float) -> list[bytes]:
        return [
            peer
            for peer, state in self._peers.items()
            if topic in state.topics
            and peer not in mesh
            and not state.doomed
            and self._link(peer, topic, now) is not _Link.BACKOFF
            and self._score_of(state.score) >= 0
        ]

    def _prune(self, peer: bytes, topic: str, now: float) -> None:
        self._send(peer, Prune(topic, self._p.prune_backoff))
        self._back_off(peer, topic, now, self._p.prune_backoff)

    def _back_off(self, peer: bytes, topic: str, now: float, seconds: float) -> None:
        since, until = self._backoff.get((peer, topic), (now, now))
        if until <= now:
            since = now
        self._backoff[peer, topic] = (since, max(until, now + seconds))

    def _push_to(self, topics: Iterable[str]) -> list[bytes]:
        """Mesh peers of ``topics`` that take pushed entries of one of them."""
        return self._mesh_but(topics, self._choked_by)

    def _pushers(self, topics: Iterable[str]) -> list[bytes]:
        """Mesh peers of ``topics`` that may push their entries to us (not choked)."""
        return self._mesh_but(topics, self._choking)

    def _mesh_but(
        self, topics: Iterable[str], left_out: Mapping[str, Container[bytes]]
    ) -> list[bytes]:
        """The mesh peers of ``topics``, each topic's ``left_out`` peers excepted."""
        peers: dict[bytes, None] = {}
        for topic in topics:
            mesh = self._joined.get(topic)
            if mesh is not None:
                out = left_out[topic]
                peers.update((peer, None) for peer in mesh if peer not in out)
        return list(peers)

    def _note_copy(self, peer: bytes, state: _Peer, message: EntryMessage, rank: int) -> None:
        """Count a copy from ``peer`` that ``rank`` copies arrived before, in
        the delivery record of each of its topics where ``peer`` is a mesh peer."""
        for topic in message.topics:
            mesh = self._joined.get(topic)
            if mesh is None or peer not in mesh:
                continue
            self._carried.add(topic)
            record = state.delivered.get(topic)
            if record is None:
                record = state.delivered[topic] = [0, 0, 0]
            record[0] += 1
            record[1] += min(rank, _LATE_RANK)
            if rank == 0:
                record[2] += 1
            elif peer in self._choking[topic] and feed_topic(peer) not in message.topics:
                # Pushed though choked (its own entries may be): it may have
                # missed the CHOKE, which is said again at the next heartbeat.
                state.pushed_choked.add(topic)

    def _remember(self, entry_id: bytes, now: float) -> None:
        self._seen[entry_id] = now + self._p.seen_ttl
        while len(self._seen) > self._p.seen_max:
            del self._seen[next(iter(self._seen))]

    def _keep(
        self, entry_id: bytes, message: EntryMessage, source: bytes | None, copies: int
    ) -> None:
        window = self._windows[-1]
        if len(window) < self._p.mcache_window_max and entry_id not in self._cache:
            window.append(entry_id)
            self._cache[entry_id] = (message, source)
            self._copies[entry_id] = copies


_HANDLERS: Final[dict[type, Callable[[Router, bytes, _Peer, Any, float], None]]] = {
    Subscribe: Router._on_subscribe,
    Unsubscribe: Router._on_unsubscribe,
    Graft: Router._on_graft,
    Prune: Router._on_prune,
    IHave: Router._on_ihave,
    IWant: Router._on_iwant,
    IDontWant: Router._on_idontwant,
    Choke: Router._on_choke,
    Unchoke: Router._on_unchoke,
}
