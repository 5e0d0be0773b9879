"""The networked node: store, identity, TCP listener, router, sync and DHT.

:func:`open_node` starts a :class:`Node` in a trio nursery and stops it when
the block ends. The node:

- listens on TCP; every connection runs the torv handshake
  (``gossip.channel``) and then a :class:`~gossip.peer.PeerConnection`;
- drives the pure cores: the gossip router (heartbeat every second; entries
  it delivers are judged and stored before the router may forward them) and
  one sync planner per peer (catch-up of the feeds in the replication scope);
- runs the DHT island (``node.discovery``) on UDP, by default on the same
  port number as TCP, announcing its address and the feeds it provides, and
  dials providers and known peers until it has enough of them;
- calls the store from worker threads, one call at a time.

Writing (``post``, ``follow``, ...) goes through :class:`~node.local.LocalNode`
and is published at once; reading is the same as offline.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import trio

from gossip.channel import HANDSHAKE_TIMEOUT, secure_handshake
from gossip.handshake import HandshakeFailed, TorvHandshake
from gossip.peer import PeerConnection, PeerInfo
from gossip.router import Delivery, Router, RouterParams, RouterStats, Verdict
from gossip.sync import Fault, GapBuffer, SyncPlanner, SyncProblem, answer, replication_scope
from gossip.wire import (
    MAX_RANGE,
    SQUARE,
    EntryBatch,
    EntryMessage,
    Heads,
    RawEntry,
    Want,
    WireMessage,
    encode_message,
    feed_topic,
)
from storage import Entry, IngestReport, Store, StoredEntry
from storage.entry import entry_id, parse_entry_untrusted
from storage.errors import BadSignature, InvalidArgument, MalformedEntry, StorageError
from storage.store import CheckedEntries

from .dialing import Backoff
from .discovery import Discovery, open_discovery
from .local import LocalNode, Thread
from .records import Record, parse_address
from .square import SquareBudget

__all__ = [
    "DEFAULT_NETWORK_KEY",
    "EntryAdded",
    "Node",
    "NodeEvent",
    "NodeOptions",
    "NodeStatus",
    "PeerDown",
    "PeerUp",
    "SyncProgress",
    "announced_address",
    "open_node",
]

log = logging.getLogger("torv.node")

#: The network key of the public torv network (the Noise prologue).
DEFAULT_NETWORK_KEY: Final = hashlib.sha256(b"torv public network, version 1").digest()
_DIAL_TIMEOUT: Final = 5.0
_ANNOUNCE_PER_ROUND: Final = 64
#: Provider lookups per connection manager round, of feeds whose mesh is thin;
_LOOKUPS_PER_ROUND: Final = 4
#: ... and in the first _STARTING seconds after the node started (the
#: simulation lost 2.3% of deliveries to returning nodes with 4: bench/_sim).
_LOOKUPS_STARTING: Final = 64
_STARTING: Final = 30.0
#: Provider lookups under way at once.
_CONCURRENT_LOOKUPS: Final = 8
#: Providers dialled per feed that has no mesh peer, above the peer limit.
_RESCUE_DIALS: Final = 2
_EVENT_QUEUE: Final = 1000
#: What each sync fault costs the peer in the router's score, as ``(invalid,
#: behaviour)``: entries that cannot be read or are not what was asked for,
#: like invalid gossip; answers the protocol does not allow, like other
#: misbehaviour. A short batch (the peer may have dropped a feed it offered
#: since, or blocked its author), a slow answer and a refusal by the store
#: (a broken chain may be the author's fork; bad signatures are counted on
#: their own) cost nothing.
_SYNC_PENALTIES: Final[dict[Fault, tuple[float, float]]] = {
    Fault.UNKNOWN_REQUEST: (0.0, 1.0),
    Fault.UNEXPECTED_BATCH: (0.0, 1.0),
    Fault.MALFORMED_ENTRY: (1.0, 0.0),
    Fault.WRONG_FEED: (1.0, 0.0),
    Fault.OUT_OF_RANGE: (0.0, 1.0),
    Fault.OUT_OF_ORDER: (0.0, 1.0),
    Fault.SHORT_BATCH: (0.0, 0.0),
    Fault.NO_PROGRESS: (0.0, 1.0),
    Fault.REJECTED: (0.0, 0.0),
    Fault.UNRESPONSIVE: (0.0, 0.0),
}
#: Gossip deliveries judged in one round (their entries stored in one transaction).
_JUDGE_ROUND: Final = 512
#: Rounds of at most this many entries are stored in the event loop's thread.
_INLINE_ROUND: Final = 16
#: Sync batches waiting to be stored. When the queue is full, the peers
#: that send more are not read until the store catches up.
_SYNC_QUEUE: Final = 16
#: One ingest round takes what is queued, up to about this many entries, and
#: stores them in one transaction: large transactions write faster (each
#: commit rewrites the index pages it touched). Its signatures are checked in
#: chunks of _SYNC_CHUNK, so the verify helpers start on the first chunk
#: while the rest of the round is parsed.
_SYNC_ROUND: Final = 4096
_SYNC_CHUNK: Final = 2048
#: The node checkpoints its store (see Node._checkpoints) when this many rows
#: changed since the last time (128 gossip rounds of one entry, two rows
#: each, write some 900 pages of log; SQLite's own rule is 1,000 pages), or
#: when this many seconds passed with any change; it looks every
#: _CHECKPOINT_POLL seconds.
_CHECKPOINT_CHANGES: Final = 256
_CHECKPOINT_AGE: Final = 30.0
_CHECKPOINT_POLL: Final = 1.0
#: A store that fails in ingest (a full disk) is logged at most once in this
#: many seconds: peers keep sending, and the node goes on.
_STORE_FAILURE_QUIET: Final = 60.0
#: Sessions that read the store to start at once (the others wait their turn).
_SESSION_SETUPS: Final = 4

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """How a node runs. Addresses are ``(host, port)``; port 0 picks a free one."""

    listen: tuple[str, int] = ("127.0.0.1", 0)
    #: The address other nodes are told to dial (in DHT records); ``None``:
    #: the listen address, or if that is a wildcard (``0.0.0.0``, ``::``) the
    #: address of this machine's interface that leads to the first seed (see
    #: :func:`announced_address`). Behind NAT, set it to the public address.
    announce: tuple[str, int] | None = None
    #: UDP port of the DHT; ``None``: the TCP port number.
    dht_port: int | None = None
    #: Seed nodes: TCP and DHT (UDP) on the same port.
    bootstrap: tuple[tuple[str, int], ...] = ()
    network_key: bytes = DEFAULT_NETWORK_KEY
    #: Subscribe to the square (all public posts); seed nodes do.
    square: bool = False
    #: Replicate follows of follows up to this many hops (1: just follows).
    hops: int = 1
    target_peers: int = 8
    max_contacts_per_ip: int | None = 8
    maintain_interval: float = 5.0
    #: Serve the local control API on ``control.sock`` in the data directory.
    control: bool = True
    announce_interval: float = 600.0
    #: Seconds between telling peers our heads of the feeds we share where
    #: they moved (sync's fallback for entries that gossip did not bring).
    heads_interval: float = 2.0
    router: RouterParams = field(default_factory=RouterParams)
    #: Connections that dialled us and are still in the handshake: past this
    #: many the oldest is dropped, so peers that stall or trickle handshakes
    #: cannot keep honest ones out (nor hold a descriptor each for long).
    max_handshakes: int = 64
    #: Sessions with peers that dialled us: past this many a new one is
    #: refused right after its handshake (the node's own dials still go out).
    max_inbound: int = 256
    #: Seconds a handshake may take before the connection is dropped.
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    #: Inbound handshakes begun per second on average (in bursts of up to
    #: ``max_handshakes``): past it a connection is closed before any
    #: cryptography, so that a flood of connections costs the node little.
    #: A peer turned away dials again after its backoff. (Under a flood of
    #: identities that complete handshakes, bench/attack.py measured honest
    #: p99 at 9.5x its quiet figure with 100 a second, 1.7x with 50.)
    handshake_rate: float = 50.0


@dataclass(frozen=True, slots=True)
class EntryAdded:
    """An entry was stored (``source``: the peer it came from, ``None`` for our own)."""

    entry_id: bytes
    author: bytes
    seq: int
    kind: str
    source: bytes | None


@dataclass(frozen=True, slots=True)
class PeerUp:
    info: PeerInfo


@dataclass(frozen=True, slots=True)
class PeerDown:
    identity: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Catch-up of ``feed`` from ``peer``: ``have`` of ``target`` entries held."""

    feed: bytes
    peer: bytes
    have: int
    target: int


NodeEvent = EntryAdded | PeerUp | PeerDown | SyncProgress


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A snapshot for ``torv status``."""

    identity: bytes
    listen: tuple[str, int]
    dht: tuple[str, int]
    peers: tuple[PeerInfo, ...]
    dht_contacts: int
    router: RouterStats
    scope: int
    sync: dict[bytes, tuple[int, int]]


def _raw(entry: Entry) -> RawEntry:
    return RawEntry(entry.header_bytes, entry.signature, entry.payload)


@dataclass(frozen=True, slots=True)
class _CheckedRound:
    """A round of sync runs, parsed, whose signatures are being checked."""

    runs: list[_SyncRun]
    parsed: _Parsed
    checked: CheckedEntries


@dataclass(frozen=True, slots=True)
class _SyncRun:
    """Entries of ``feed`` that ``peer``'s planner handed out, waiting to be stored."""

    peer: bytes
    planner: SyncPlanner
    feed: bytes
    entries: tuple[RawEntry, ...]


#: What :meth:`Node._store` did: an event for each entry stored, the head of
#: each feed after, and the peer that sent each entry with a bad signature.
_Stored = tuple[list["EntryAdded"], dict[bytes, int], list[bytes]]
#: ``(feed, entries, source)``: a feed's entries in log order, from the peer
#: ``source`` (``None``: held here until they fit), as received.
_Run = tuple[bytes, Sequence[RawEntry], bytes | None]


class _Parsed:
    """The entries of ``runs`` (see :data:`_Run`) parsed as they are read:
    each run up to its first malformed entry (nothing after that entry could
    link to the log). Iterating parses; :attr:`entries` and :attr:`sources`
    then hold, in order, what was handed out and from which peer."""

    def __init__(self, runs: Sequence[_Run]) -> None:
        self.runs = runs
        self.entries: list[Entry] = []
        self.sources: list[bytes | None] = []

    def __iter__(self) -> Iterator[Entry]:
        for _, raws, source in self.runs:
            for raw in raws:
                try:
                    entry = parse_entry_untrusted(raw.header, raw.signature, raw.payload)
                except MalformedEntry:
                    break
                self.entries.append(entry)
                self.sources.append(source)
                yield entry


def _next_tick(tick: float, interval: float, now: float) -> float:
    """The first tick after ``now`` on the grid of ``tick`` + k * ``interval``
    (ticks missed while the loop was held up are skipped, not made up)."""
    tick += interval
    if tick <= now:
        tick += interval * math.ceil((now - tick) / interval + 1e-9)
    return tick


def _topics(entry: Entry) -> tuple[str, ...]:
    """Where an entry is published: its feed's topic, and the square for posts
    and for deletes (a node on the square drops a deleted post it kept)."""
    if entry.kind in ("post", "delete"):
        return (feed_topic(entry.author), SQUARE)
    return (feed_topic(entry.author),)


class Node:
    """A running node. Use :func:`open_node`; methods are called from trio."""

    def __init__(
        self,
        local: LocalNode,
        options: NodeOptions,
        nursery: trio.Nursery,
        discovery: Discovery,
        listen: tuple[str, int],
    ) -> None:
        self.local = local
        self.options = options
        self.listen_address = listen
        #: The address in our DHT records (:attr:`NodeOptions.announce`).
        self.announce_address = announced_address(listen, options.announce, options.bootstrap)
        self._nursery = nursery
        self._discovery = discovery
        self._db_lock = trio.Lock()
        self.router = Router(local.me, options.router, random.Random())
        self._connections: dict[bytes, PeerConnection] = {}
        self._planners: dict[bytes, SyncPlanner] = {}
        self._wakers: dict[bytes, trio.Event] = {}
        self._unregistered: dict[bytes, trio.Event] = {}
        self._gaps = GapBuffer()
        self._scope: frozenset[bytes] = frozenset()
        # The feeds the owner blocks. Set only in the store's worker calls
        # (under the store lock, as the store changes), and handed to every
        # ingest: an entry judged or fetched before a block is not written
        # after the block's purge.
        self._blocked: frozenset[bytes] = frozenset()
        self._square_budget = SquareBudget()
        self._subscribers: list[trio.MemorySendChannel[NodeEvent]] = []
        self._deliveries_send, self._deliveries_receive = trio.open_memory_channel[Delivery](4096)
        self._sync_send, self._sync_receive = trio.open_memory_channel[_SyncRun](_SYNC_QUEUE)
        self._dialing: set[tuple[str, int]] = set()
        self._backoff = Backoff()
        #: Test only (see :meth:`set_test_reachable`): the peers the network reaches.
        self._test_reachable: Callable[[bytes], bool] | None = None
        #: Our feed has entries (from before the start, or published since
        #: the last look) that may have reached no follower (_thin_feeds).
        self._own_unheard = True
        self._own_sought = False  # a lookup of our followers since then
        self._started = trio.current_time()
        #: Feeds whose provider record is not yet in the DHT (new in the scope).
        self._unannounced: set[bytes] = set()
        self._upkeep = trio.Event()
        self._dht_contacts = 0  # as of the last upkeep round
        # Inbound handshakes under way, oldest first (see max_handshakes), and
        # inbound connections past their handshake (see max_inbound).
        self._handshaking: dict[trio.CancelScope, None] = {}
        self._inbound = 0
        self._session_setups = trio.CapacityLimiter(_SESSION_SETUPS)
        # (tokens, when counted): a full bucket to start with.
        self._handshake_budget = (float(max(1, options.max_handshakes)), trio.current_time())
        #: Entries of other feeds stored, and entries sent to peers, since the start.
        self.entries_in = 0
        self.entries_out = 0
        #: When a store failure in ingest may be logged again (see _store_failed).
        self._store_failure_quiet_until = -_STORE_FAILURE_QUIET

    @property
    def me(self) -> bytes:
        return self.local.me

    @property
    def store(self) -> Store:
        return self.local.store

    # --- the store, one call at a time in a worker thread --------------------

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._db_lock:
            return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def _db_here(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """As :meth:`_db`, in this thread: for calls of a few hundred
        microseconds, which cost less than handing them to a worker and back
        (and the event loop's wait for the GIL that a busy worker holds)."""
        async with self._db_lock:
            return fn(*args, **kwargs)

    async def call_store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the store's worker thread (the store
        is used by one call at a time) and return its result."""
        return await self._db(fn, *args, **kwargs)

    async def dht_contacts(self) -> list[tuple[str, int]]:
        """The DHT nodes in this node's routing table."""
        return await self._discovery.contacts()

    # --- events ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[trio.MemoryReceiveChannel[NodeEvent]]:
        """Subscribe to events (a slow reader misses events rather than stalling the node)."""
        send, receive = trio.open_memory_channel[NodeEvent](_EVENT_QUEUE)
        self._subscribers.append(send)
        try:
            yield receive
        finally:
            self._subscribers.remove(send)
            send.close()

    def _emit(self, event: NodeEvent) -> None:
        # Called for every entry stored: a sync of 100,000 entries calls it
        # 100,000 times, so it avoids a context manager per subscriber.
        if type(event) is EntryAdded and event.author != self.local.me:
            self.entries_in += 1
        for channel in self._subscribers:
            try:  # noqa: SIM105 (cheaper than contextlib.suppress)
                channel.send_nowait(event)
            except trio.WouldBlock:
                pass  # a subscriber that lags misses events

    # --- the owner's API --------------------------------------------------------

    async def _publish(self, entry: Entry) -> Entry:
        now = trio.current_time()
        self.router.publish(entry.id, EntryMessage(_topics(entry), _raw(entry)), now)
        self._flush()
        self._own_unheard, self._own_sought = True, False
        self._local_head(entry.author, entry.seq)
        self._emit(EntryAdded(entry.id, entry.author, entry.seq, entry.kind, None))
        return entry

    async def post(
        self, text: str, *, reply_to: bytes | None = None, cw: str | None = None
    ) -> Entry:
        """Post (or reply); stored before it is sent to anyone."""
        return await self._publish(await self._db(self.local.post, text, reply_to=reply_to, cw=cw))

    async def react(self, entry_id: bytes, emoji: str = "♥") -> Entry:
        return await self._publish(await self._db(self.local.react, entry_id, emoji))

    async def repost(self, entry_id: bytes) -> Entry:
        return await self._publish(await self._db(self.local.repost, entry_id))

    async def set_profile(self, *, name: str | None = None, bio: str | None = None) -> Entry:
        return await self._publish(await self._db(self.local.set_profile, name=name, bio=bio))

    async def delete(self, entry_id: bytes) -> Entry:
        return await self._publish(await self._db(self.local.delete, entry_id))

    async def _relation(
        self, method: Callable[[bytes], Entry | None], feed: bytes
    ) -> Entry | None:
        entry = await self._db(method, feed)
        if entry is not None:
            await self._publish(entry)
            await self._rescope()
        return entry

    async def follow(self, feed: bytes) -> Entry | None:
        """Follow ``feed`` and start replicating it (``None``: already following)."""
        return await self._relation(self.local.follow, feed)

    async def unfollow(self, feed: bytes) -> Entry | None:
        return await self._relation(self.local.unfollow, feed)

    async def block(self, feed: bytes) -> Entry | None:
        """Block ``feed``: publish the block, purge its entries, end any
        session with it and refuse new ones."""
        entry = await self._relation(self._block_here, feed)
        connection = self._connections.get(feed)
        if connection is not None:
            connection.close("blocked")
        return entry

    def _block_here(self, feed: bytes) -> Entry | None:
        """Block ``feed`` in the store (in the worker thread), and refuse its
        entries from the next ingest on."""
        entry = self.local.block(feed)
        self._blocked = self._blocked | {feed}
        return entry

    async def unblock(self, feed: bytes) -> Entry | None:
        return await self._relation(self.local.unblock, feed)

    async def timeline(self, *, limit: int = 50) -> list[StoredEntry]:
        return await self._db(self.local.timeline, limit=limit)

    async def feed(self, feed: bytes, *, limit: int = 50) -> list[StoredEntry]:
        return await self._db(self.store.feed, feed, limit=limit)

    async def thread(self, entry_id: bytes) -> Thread:
        return await self._db(self.local.thread, entry_id)

    def peers(self) -> list[PeerInfo]:
        return [connection.info for connection in self._connections.values()]

    # --- test only ---------------------------------------------------------------

    async def set_test_reachable(
        self,
        peers: Callable[[bytes], bool] | None,
        dht: Callable[[tuple[str, int]], bool] | None = None,
    ) -> None:
        """Test only (``node.testing``'s ``Swarm.partition``): act as if the
        network reached only the peers whose identity ``peers`` accepts.

        Sessions with other peers end (this returns once they have); new
        ones are refused after the handshake, and dials that name such a
        peer fail at once (and back off as any failed dial does). The DHT
        drops datagrams from the UDP addresses ``dht`` refuses. ``None`` for
        both lifts the cut. A real node never calls this.
        """
        self._test_reachable = peers
        await self._discovery.set_test_reachable(dht)
        if peers is not None:
            gone = []
            for peer, connection in self._connections.items():
                if not peers(peer):
                    connection.close("cut off by a test partition")
                    gone.append(self._unregistered[peer])
            for event in gone:
                await event.wait()

    def _test_reaches(self, peer: bytes) -> bool:
        return self._test_reachable is None or self._test_reachable(peer)

    def status(self) -> NodeStatus:
        sync: dict[bytes, tuple[int, int]] = {}
        for planner in self._planners.values():
            for feed, progress in planner.progress().items():
                have, target = sync.get(feed, (progress.have, progress.target))
                sync[feed] = (max(have, progress.have), max(target, progress.target))
        return NodeStatus(
            self.me,
            self.listen_address,
            self._discovery.address,
            tuple(self.peers()),
            self._dht_contacts,
            self.router.stats(),
            len(self._scope),
            sync,
        )

    # --- replication scope and topics ------------------------------------------

    def _compute_scope(self) -> frozenset[bytes]:
        """The feeds replicated here (in the worker thread); also sets the
        feeds the owner blocks, as the store holds them now."""
        store, me = self.store, self.me
        following: dict[bytes, list[bytes]] = {me: store.following(me)}
        frontier = list(following[me])
        for _ in range(self.options.hops - 1):
            next_frontier = []
            for feed in frontier:
                if feed not in following:
                    following[feed] = store.following(feed)
                    next_frontier.extend(following[feed])
            frontier = next_frontier
        self._blocked = frozenset(store.blocking(me))
        return replication_scope(me, following, hops=self.options.hops, blocked=self._blocked)

    async def _rescope(self) -> None:
        scope = await self._db(self._compute_scope)
        heads = await self._db(lambda: {feed: self.store.latest_seq(feed) for feed in scope})
        now = trio.current_time()
        wanted = {feed_topic(feed) for feed in scope} | (
            {SQUARE} if self.options.square else set()
        )
        for topic in self.router.joined - wanted:
            self.router.leave(topic, now)
        for topic in wanted - self.router.joined:
            self.router.join(topic, now)
        added = scope - self._scope
        self._scope = scope
        if added:
            # Announce at once: followers of a feed find each other through
            # its provider records, not only the author.
            self._unannounced |= added
            self._upkeep.set()
        for peer, planner in self._planners.items():
            planner.set_scope(scope, heads)
            # The peer learns that we replicate the feeds that joined.
            self._send_heads(peer, planner.announce())
            self._wake(peer)
        self._flush()

    # --- the router -------------------------------------------------------------

    def _flush(self, also: Mapping[bytes, Sequence[WireMessage]] | None = None) -> None:
        """Carry out what the router asked for; ``also``: more messages by peer
        that leave with it."""
        # The router hands the same message object to every peer it goes to
        # (an entry forwarded to the mesh): encode it once. What goes to one
        # peer leaves in one write.
        encoded: dict[int, bytes] = {}
        by_peer: dict[bytes, list[bytes]] = {}
        for peer, message in self.router.drain():
            data = encoded.get(id(message))
            if data is None:
                try:
                    data = encoded[id(message)] = encode_message(message)
                except InvalidArgument as exc:
                    # A message the peer would refuse is a bug here; the node
                    # goes on without it rather than stop.
                    log.error("not sent to %s: %s", peer.hex()[:16], exc)
                    continue
            by_peer.setdefault(peer, []).append(data)
            if isinstance(message, EntryMessage):
                self.entries_out += 1
        for peer, extra in (also or {}).items():
            by_peer.setdefault(peer, []).extend(encode_message(message) for message in extra)
        for peer, messages in by_peer.items():
            connection = self._connections.get(peer)
            if connection is not None:
                connection.send_all(messages)
        for delivery in self.router.deliveries():
            try:
                self._deliveries_send.send_nowait(delivery)
            except trio.WouldBlock:
                self.router.validated(delivery.entry_id, Verdict.IGNORE, trio.current_time())
        for peer, reason in self.router.disconnects():
            connection = self._connections.get(peer)
            if connection is not None:
                connection.close(reason)

    async def _heartbeats(self) -> None:
        """The router's heartbeat, on a fixed beat of its own.

        Beats are one interval apart from a random first one, and late beats
        do not move the later ones: a timer set again from "now" after the
        event loop was held up fires with every other timer held up with it,
        and from then on they keep firing together. In a process with many
        nodes (a test swarm) their heartbeats then came in bursts that held
        up every entry in flight (bench/propagate.py: 100 heartbeats, 134 ms,
        in one batch of the scheduler).
        """
        interval = self.options.router.heartbeat_interval
        heads_interval = self.options.heads_interval
        beat = trio.current_time() + interval * random.uniform(0.05, 1.0)
        next_heads = beat + heads_interval
        while True:
            await trio.sleep_until(beat)
            now = trio.current_time()
            beat = _next_tick(beat, interval, now)
            self.router.heartbeat(now)
            self._gaps.expire(now)
            heads: dict[bytes, list[Heads]] = {}
            if now >= next_heads:
                # Our progress reaches the peers that share a feed even where
                # gossip did not bring them the entries (gossip.sync); it
                # leaves with the heartbeat's gossip, one write per peer.
                for peer, planner in self._planners.items():
                    if messages := planner.announce_progress():
                        heads[peer] = messages
                next_heads = _next_tick(next_heads, heads_interval, now)
            self._flush(heads)

    async def _judge_deliveries(self) -> None:
        """Judge what the router delivers, in rounds, until cancelled.

        A round takes every delivery queued meanwhile (up to
        :data:`_JUDGE_ROUND`) and stores the valid ones in one
        ``Store.ingest`` call: one transaction, one sync to disk, where one
        call per entry spent most of a loaded node's time waiting on commits.
        Then the router learns each verdict and forwards what was accepted.
        """
        async for first in self._deliveries_receive:
            deliveries = [first]
            while len(deliveries) < _JUDGE_ROUND:
                try:
                    deliveries.append(self._deliveries_receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                verdicts = await self._judge(deliveries)
            except StorageError as exc:
                # Not stored, so not forwarded; no peer is to blame. What was
                # missed comes by sync once a later entry shows the gap.
                self._store_failed(exc)
                verdicts = [Verdict.IGNORE] * len(deliveries)
            now = trio.current_time()
            for delivery, verdict in zip(deliveries, verdicts, strict=True):
                self.router.validated(delivery.entry_id, verdict, now)
            self._flush()

    async def _judge(self, deliveries: Sequence[Delivery]) -> list[Verdict]:
        """The verdict on each of ``deliveries``, storing the valid ones.

        Each entry is parsed and its topics checked on its own; those in the
        scope go to the store together, in log order per author (so entries
        of one feed that arrived out of order in the round still link). One
        that is ahead of a gap is held in the gap buffer while the planners
        fetch the gap, and ignored.
        """
        verdicts: list[Verdict] = []
        parsed: dict[int, Entry] = {}  # index in deliveries -> entry to store
        loose: dict[int, Entry] = {}  # square entries of feeds outside the scope
        for index, delivery in enumerate(deliveries):
            checked = self._check(delivery)
            if isinstance(checked, Verdict):
                verdicts.append(checked)
            elif checked.author in self._scope:
                verdicts.append(Verdict.ACCEPT)
                parsed[index] = checked
            else:
                verdicts.append(Verdict.IGNORE)
                loose[index] = checked
        if loose:
            await self._judge_square(deliveries, loose, verdicts)
        if not parsed:
            return verdicts
        order = sorted(parsed, key=lambda index: (parsed[index].author, parsed[index].seq))
        # A small round (the usual one) is checked and stored here: its
        # commit is not synced to disk (storage.store), and handing a few
        # signatures to the verify threads and back cost this thread more
        # than checking them (bench/propagate.py, both ways).
        store = self._db_here if len(order) <= _INLINE_ROUND else self._db
        report, heads = await store(self._store_deliveries, [parsed[i] for i in order])
        now = trio.current_time()
        for position in report.refused:
            verdicts[order[position]] = Verdict.IGNORE  # blocked since it was judged
        gaps = False
        for position, error in report.rejected:
            index = order[position]
            if error.problem != "gap":
                verdicts[index] = Verdict.REJECT
                continue
            entry = parsed[index]
            head = heads[entry.author]
            raw = deliveries[index].message.entry
            self._gaps.add(entry.author, entry.seq, raw, now, head=head)
            for planner in self._planners.values():
                planner.on_gap(entry.author, head + 1, entry.seq - 1)
            verdicts[index] = Verdict.IGNORE
            gaps = True
        if gaps:
            self._wake_all()
        stored: dict[bytes, int] = {}
        for position in report.stored_indices:
            index = order[position]
            entry = parsed[index]
            stored[entry.author] = max(stored.get(entry.author, 0), entry.seq)
            self._emit(
                EntryAdded(entry.id, entry.author, entry.seq, entry.kind, deliveries[index].peer)
            )
        for feed, seq in stored.items():
            # Entries held ahead of a gap that this round filled fit now;
            # without this they would wait for a sync batch of that feed.
            ready = self._gaps.ready(feed, seq)
            if ready:
                heads = await self._ingest_raw(_Parsed([(feed, ready, None)]))
                seq = max(seq, heads.get(feed, seq))
            self._local_head(feed, seq)
        return verdicts

    def _check(self, delivery: Delivery) -> Entry | Verdict:
        """The entry of ``delivery`` to store (in a log, or on the square when
        its feed is outside the scope), or the verdict without storing it."""
        raw = delivery.message.entry
        try:
            entry = parse_entry_untrusted(raw.header, raw.signature, raw.payload)
        except MalformedEntry:
            return Verdict.REJECT
        if entry.id != delivery.entry_id or set(delivery.message.topics) - set(_topics(entry)):
            return Verdict.REJECT  # the topics must fit the entry
        if entry.author in self._scope:
            return entry
        if SQUARE in delivery.message.topics and entry.author not in self._blocked:
            return entry
        return Verdict.IGNORE

    async def _judge_square(
        self, deliveries: Sequence[Delivery], loose: dict[int, Entry], verdicts: list[Verdict]
    ) -> None:
        """Keep square posts of feeds outside the scope within their authors'
        rate bound (:mod:`node.square`), and drop the square posts their
        authors delete; set the verdicts: accepted (forwarded) if kept or
        dropped, rejected if the signature is bad, ignored otherwise.

        The bound is charged only for a post whose signature holds and that
        is new here, so forged posts cannot spend an author's budget.
        """
        now = trio.current_time()

        def allow(entry: Entry) -> bool:
            # Asked in the worker thread, as the post is written: a block
            # since the post was judged counts.
            return entry.author not in self._blocked and self._square_budget.allow(
                entry.author, now
            )

        posts = [index for index, entry in loose.items() if entry.kind == "post"]
        deletes = [index for index, entry in loose.items() if entry.kind == "delete"]
        if posts:
            report = await self._db(
                self.store.keep_on_square, [loose[index] for index in posts], allow
            )
            for position in report.kept:
                index = posts[position]
                verdicts[index] = Verdict.ACCEPT
                entry, peer = loose[index], deliveries[index].peer
                self._emit(EntryAdded(entry.id, entry.author, entry.seq, entry.kind, peer))
            for position in report.bad:
                verdicts[posts[position]] = Verdict.REJECT
        if deletes:
            report = await self._db(self.store.drop_from_square, [loose[i] for i in deletes])
            for position in report.kept:
                verdicts[deletes[position]] = Verdict.ACCEPT
            for position in report.bad:
                verdicts[deletes[position]] = Verdict.REJECT

    def _store_deliveries(self, entries: Sequence[Entry]) -> tuple[IngestReport, dict[bytes, int]]:
        """Ingest ``entries``; also the store's head of each author with an
        entry refused for a gap."""
        report = self.store.ingest(entries, refuse=self._blocked)
        gapped = {entries[p].author for p, error in report.rejected if error.problem == "gap"}
        return report, {author: self.store.latest_seq(author) for author in gapped}

    def _local_head(self, feed: bytes, seq: int) -> None:
        for planner in self._planners.values():
            planner.on_local_head(feed, seq)

    def _store_failed(self, exc: StorageError) -> None:
        """Entries from peers could not be stored (a full disk, say): log why,
        at most once in :data:`_STORE_FAILURE_QUIET` seconds, and go on."""
        now = trio.current_time()
        if now >= self._store_failure_quiet_until:
            self._store_failure_quiet_until = now + _STORE_FAILURE_QUIET
            log.warning(
                "entries from peers are not stored: %s (the node goes on, and fetches"
                " them again when it can store them)",
                exc,
            )

    async def _checkpoints(self) -> None:
        """Copy the store's write-ahead log into its database file from a
        worker thread, once enough was written or some time passed, until
        cancelled. The node turns SQLite's own checkpoints off: they run in
        whichever commit takes the log past 1,000 pages, and for the small
        rounds stored in the event loop's thread that meant a pause of
        milliseconds, with two syncs to disk, for everything the loop runs.
        """
        last = trio.current_time()
        while True:
            await trio.sleep(_CHECKPOINT_POLL)
            changes = await self._db_here(lambda: self.store.changes_since_checkpoint)
            now = trio.current_time()
            if changes < _CHECKPOINT_CHANGES and not (changes and now - last >= _CHECKPOINT_AGE):
                continue
            last = now
            try:
                await self._db(self.store.checkpoint)
            except StorageError as exc:
                # Nothing is lost: the log keeps every commit. Tried again
                # after _CHECKPOINT_AGE.
                log.warning("could not checkpoint the store: %s", exc)

    # --- peers ----------------------------------------------------------------------

    async def _serve(self, stream: trio.SocketStream) -> None:
        try:
            address = "{}:{}".format(*stream.socket.getpeername()[:2])
        except OSError:
            address = "?"
        if not self._may_handshake():
            log.info("turned away %s: too many handshakes lately", address)
            return
        handshake = TorvHandshake(
            initiator=False,
            identity=self.local.signing_key(),
            network_key=self.options.network_key,
        )
        await self._session(stream, handshake, address, outbound=False)

    async def dial(self, host: str, port: int, expected: bytes | None = None) -> bool:
        """Connect to a peer; True once its session has started (or was already there).

        With ``expected``, the handshake fails unless the peer proves that
        identity. An address that fails is dialled again by the connection
        manager only after a backoff (:class:`node.dialing.Backoff`).
        """
        target = (host, port)
        if target in self._dialing:
            return False
        self._dialing.add(target)
        connected = False
        try:
            connected = await self._dial(host, port, expected)
            return connected
        finally:
            self._dialing.discard(target)
            if connected:
                self._backoff.succeeded(target)
            else:
                self._backoff.failed(target, trio.current_time())
                if expected is not None:
                    with contextlib.suppress(StorageError):
                        await self._db(self.store.peer_failed, expected)

    async def _dial(self, host: str, port: int, expected: bytes | None) -> bool:
        if expected is not None and not self._test_reaches(expected):
            return False  # a test partition: as if the address could not be reached
        try:
            with trio.move_on_after(_DIAL_TIMEOUT):
                stream = await trio.open_tcp_stream(host, port)
                started = trio.Event()
                handshake = TorvHandshake(
                    initiator=True,
                    identity=self.local.signing_key(),
                    network_key=self.options.network_key,
                    expected=expected,
                )
                self._nursery.start_soon(
                    self._session, stream, handshake, f"{host}:{port}", True, started
                )
                await started.wait()
                return any(c.info.address == f"{host}:{port}" for c in self._connections.values())
            return False
        except OSError as exc:
            log.info("could not reach %s:%d: %s", host, port, exc)
            return False

    async def _session(
        self,
        stream: trio.abc.Stream,
        handshake: TorvHandshake,
        address: str,
        outbound: bool,
        started: trio.Event | None = None,
    ) -> None:
        counted = False
        try:
            with trio.CancelScope() as slot:
                if not outbound:
                    self._admit_handshake(slot)
                try:
                    secure = await secure_handshake(
                        stream, handshake, time_limit=self.options.handshake_timeout
                    )
                except HandshakeFailed as exc:
                    log.info("handshake with %s failed: %s", address, exc)
                    return
                finally:
                    self._handshaking.pop(slot, None)
            if slot.cancelled_caught:
                log.info("dropped the handshake with %s: too many under way", address)
                return
            if not outbound:
                # Checked before any work for the session, so that a flood
                # of identities that complete handshakes costs no more.
                if self._inbound >= self.options.max_inbound:
                    log.info("refused a session with %s: inbound sessions full", address)
                    return
                self._inbound += 1
                counted = True
            peer = secure.remote_identity
            # Heads are read before the check below: nothing may await between
            # the check and the registration in _run_peer, or two sessions
            # with one peer both register (and the router refuses the second).
            # One trip to the store's thread, and few sessions at a time: a
            # crowd of new sessions must not queue ahead of the node's work.
            async with self._session_setups:
                blocked, heads = await self._db(
                    lambda: (
                        self.store.blocking(self.me),
                        {feed: self.store.latest_seq(feed) for feed in self._scope},
                    )
                )
            if peer == self.me or peer in blocked or not self._test_reaches(peer):
                log.info("refused a session with %s", peer.hex()[:16])
                return
            if outbound:
                # Before the session shows: a node stopped as soon as it sees
                # the peer still finds it in its address book when it starts.
                with contextlib.suppress(StorageError):  # an address book entry fewer
                    await self._db(self.store.remember_peer, peer, [address])
            while (existing := self._connections.get(peer)) is not None:
                # Two nodes that dial each other at once must keep the same
                # connection: the one dialled by the smaller identity.
                smaller = min(self.me, peer)
                if (self.me if outbound else peer) != smaller or (
                    self.me if existing.info.outbound else peer
                ) == smaller:
                    return
                existing.close("replaced by the connection the other side dialled")
                await self._unregistered[peer].wait()
            connection = PeerConnection(secure, address=address, outbound=outbound)
            await self._run_peer(connection, started, heads)
        finally:
            if counted:
                self._inbound -= 1
            if started is not None:
                started.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    def _may_handshake(self) -> bool:
        """Take a token of the inbound handshake budget (see ``handshake_rate``)."""
        now = trio.current_time()
        burst = max(1, self.options.max_handshakes)
        elapsed = now - self._handshake_budget[1]
        tokens = min(burst, self._handshake_budget[0] + elapsed * self.options.handshake_rate)
        self._handshake_budget = (tokens - 1, now) if tokens >= 1 else (tokens, now)
        return tokens >= 1

    def _admit_handshake(self, slot: trio.CancelScope) -> None:
        """Count an inbound handshake; past ``max_handshakes``, cancel the oldest
        (an honest one completes in a round trip or two, a stalled one waits)."""
        self._handshaking[slot] = None
        while len(self._handshaking) > max(1, self.options.max_handshakes):
            oldest = next(iter(self._handshaking))
            del self._handshaking[oldest]
            oldest.cancel()

    async def _run_peer(
        self, connection: PeerConnection, started: trio.Event | None, heads: dict[bytes, int]
    ) -> None:
        peer = connection.identity
        now = trio.current_time()
        planner = SyncPlanner(self._scope, heads)
        self._connections[peer] = connection
        self._planners[peer] = planner
        self._wakers[peer] = trio.Event()
        self._unregistered[peer] = gone = trio.Event()
        self.router.add_peer(peer, now)
        if started is not None:
            started.set()
        log.debug("peer up: %s at %s", peer.hex()[:16], connection.info.address)
        self._emit(PeerUp(connection.info))
        connection.send_messages(planner.hello())
        self._flush()
        reason = "the node is stopping"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sync_loop, peer, planner, connection)
                reason = await connection.run(self._on_messages)
                nursery.cancel_scope.cancel()
        finally:
            del self._connections[peer], self._planners[peer], self._wakers[peer]
            del self._unregistered[peer]
            self.router.remove_peer(peer, trio.current_time())
            gone.set()
            log.debug("peer down: %s (%s)", peer.hex()[:16], reason)
            self._emit(PeerDown(peer, reason))

    def _wake(self, peer: bytes) -> None:
        """Let the peer's sync loop send what its planner has queued (if
        anything: deadlines wake the loop on their own)."""
        waker = self._wakers.get(peer)
        planner = self._planners.get(peer)
        if waker is not None and planner is not None and planner.has_work:
            waker.set()

    def _wake_all(self) -> None:
        for peer in self._wakers:
            self._wake(peer)

    def _send_heads(self, peer: bytes, messages: Sequence[Heads]) -> None:
        connection = self._connections.get(peer)
        if connection is not None and messages:
            connection.send_messages(messages)

    async def _sync_loop(
        self, peer: bytes, planner: SyncPlanner, connection: PeerConnection
    ) -> None:
        while True:
            now = trio.current_time()
            for problem in planner.expire(now):
                log.info("sync with %s: %s", peer.hex()[:16], problem)
            wants = planner.next_requests(now)
            if wants:
                connection.send_messages(wants)
            waker = self._wakers[peer] = trio.Event()
            deadline = planner.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else now + 5.0):
                await waker.wait()

    async def _on_messages(
        self, connection: PeerConnection, messages: Sequence[WireMessage]
    ) -> None:
        """Act on what one read from a peer brought; what the router has to
        send meanwhile leaves at the end, or before a step that waits."""
        peer = connection.identity
        for message in messages:
            now = trio.current_time()
            if isinstance(message, EntryMessage):
                raw = message.entry
                self.router.handle_entry(peer, entry_id(raw.header, raw.signature), message, now)
            elif isinstance(message, Heads):
                planner = self._planners.get(peer)
                if planner is not None:
                    planner.on_heads(message)
                    # Where we are ahead, the peer hears it now and can ask.
                    self._send_heads(peer, planner.announce())
                    self._wake(peer)
            elif isinstance(message, Want):
                self._flush()
                await self._serve_want(connection, message)
            elif isinstance(message, EntryBatch):
                self._flush()
                await self._on_batch(peer, message)
            else:
                self.router.handle(peer, message, now)
        self._flush()

    async def _serve_want(self, connection: PeerConnection, want: Want) -> None:
        if want.feed not in self._scope:
            connection.send(EntryBatch(want.request, (), True))
            return
        # One row more than a batch holds: then answer() says the range goes on.
        rows = await self._db(
            self.store.raw_log, want.feed, want.first, want.last, limit=MAX_RANGE + 1
        )
        batch = answer(want, [RawEntry(*row) for row in rows])
        self.entries_out += len(batch.entries)
        connection.send(batch)

    async def _on_batch(self, peer: bytes, batch: EntryBatch) -> None:
        planner = self._planners.get(peer)
        if planner is None:
            return
        outcome = planner.on_batch(batch, trio.current_time())
        self._sync_faults(peer, outcome.problems)
        if outcome.feed is not None and outcome.preview:
            head = await self._db(self.store.latest_seq, outcome.feed)
            for seq, raw in outcome.preview:
                self._gaps.add(outcome.feed, seq, raw, trio.current_time(), head=head)
        # The answered request left the window: ask for more while this waits.
        self._wake(peer)
        if outcome.feed is not None and outcome.entries:
            # When the queue is full this waits, and so does reading from the
            # peer: the store sets the pace.
            await self._sync_send.send(_SyncRun(peer, planner, outcome.feed, outcome.entries))

    def _round(self, runs: list[_SyncRun]) -> list[_SyncRun]:
        """``runs`` and the runs queued after them, up to about _SYNC_ROUND entries."""
        count = sum(len(run.entries) for run in runs)
        while count < _SYNC_ROUND:
            try:
                run = self._sync_receive.receive_nowait()
            except trio.WouldBlock:
                break
            runs.append(run)
            count += len(run.entries)
        return runs

    async def _ingest_sync(self) -> None:
        """Store what the sync planners hand out, in rounds, until cancelled.

        A round takes every run queued meanwhile (up to about _SYNC_ROUND
        entries, from any peer, in the order they came). One call in the
        worker thread parses a round and hands it to the verify threads,
        then writes the round before, whose signatures were checked
        meanwhile: so the checks of one round go on while the store writes
        the one before. (With a round parsed, checked and written in turn,
        no signature was checked a quarter of the time; parsing in a thread
        of its own cost more in turns at the GIL than it saved.)
        """
        checking: _CheckedRound | None = None
        while True:
            if checking is None:
                try:
                    runs = self._round([await self._sync_receive.receive()])
                except trio.EndOfChannel:
                    return
            else:
                runs = self._round([])
            parsed = _Parsed([(run.feed, run.entries, run.peer) for run in runs])
            stored, checked = await self._db(self._check_and_store, parsed, checking)
            if checking is not None:
                assert stored is not None
                await self._after_store(checking.runs, stored)
            checking = _CheckedRound(runs, parsed, checked) if runs else None

    def _check_and_store(
        self, parsed: _Parsed, checking: _CheckedRound | None
    ) -> tuple[_Stored | StorageError | None, CheckedEntries]:
        """Start checking ``parsed``; then store ``checking`` (in the worker thread)."""
        checked = self.store.check(parsed, chunk_size=_SYNC_CHUNK)
        if checking is None:
            return None, checked
        try:
            return self._store(checking.parsed, checking.checked), checked
        except StorageError as exc:
            return exc, checked

    async def _after_store(self, runs: list[_SyncRun], stored: _Stored | StorageError) -> None:
        """Tell the planners, peers and subscribers what became of ``runs``."""
        forged: dict[bytes, int] = {}
        try:
            if isinstance(stored, StorageError):
                raise stored
            heads = self._stored(stored, forged)
            for feed, head in list(heads.items()):
                # Entries held ahead of a gap may fit now.
                ready = self._gaps.ready(feed, head)
                if ready:
                    heads.update(await self._ingest_raw(_Parsed([(feed, ready, None)])))
        except StorageError as exc:
            # The planners would not ask again for what was not stored:
            # end these sessions, and the next ones sync again.
            self._store_failed(exc)
            for peer in {run.peer for run in runs}:
                connection = self._connections.get(peer)
                if connection is not None:
                    connection.close("this node could not store what it sent")
            return
        for peer, count in forged.items():
            self.router.penalise(
                peer, f"sent {count} entries with bad signatures by sync", invalid=count
            )
        for run in runs:
            head = heads[run.feed]
            self._sync_faults(run.peer, run.planner.on_ingested(run.feed, head))
            progress = run.planner.progress().get(run.feed)
            if progress is not None:
                self._emit(SyncProgress(run.feed, run.peer, head, max(progress.target, head)))
        for feed, head in heads.items():
            self._local_head(feed, head)
        for peer in {run.peer for run in runs}:
            self._wake(peer)
        self._flush()  # hang up on peers the penalties cut off

    def _sync_faults(self, peer: bytes, problems: Sequence[SyncProblem]) -> None:
        """Log a sync peer's faults and score it down for them (see
        :data:`_SYNC_PENALTIES`); the caller flushes the router."""
        for problem in problems:
            log.info("sync with %s: %s", peer.hex()[:16], problem)
            invalid, behaviour = _SYNC_PENALTIES[problem.fault]
            if invalid or behaviour:
                why = f"sync: {problem.fault}"
                self.router.penalise(peer, why, invalid=invalid, behaviour=behaviour)

    async def _ingest_raw(
        self, parsed: _Parsed, forged: dict[bytes, int] | None = None
    ) -> dict[bytes, int]:
        """Parse and store the runs of ``parsed`` in the worker thread.

        Emits :class:`EntryAdded` for each entry stored (not for duplicates
        or refused ones); returns the store's head of each run's feed after.
        Counts into ``forged`` the entries with a bad signature per peer that
        sent them: a peer checks what it stores and serves, so no honest one
        sends such an entry (other refusals, a broken chain, may come from an
        author's fork and judge nobody).
        """
        return self._stored(await self._db(self._store, parsed, None), forged)

    def _stored(self, stored: _Stored, forged: dict[bytes, int] | None) -> dict[bytes, int]:
        """Emit the events of ``stored``, count its forgeries; the heads."""
        added, heads, bad = stored
        for event in added:
            self._emit(event)
        if forged is not None:
            for peer in bad:
                forged[peer] = forged.get(peer, 0) + 1
        return heads

    def _store(self, parsed: _Parsed, checked: CheckedEntries | None) -> _Stored:
        """Store ``parsed`` (in the worker thread): the events, the heads,
        and the sender of each entry with a bad signature. Unless ``checked``
        holds them (see :meth:`Store.check`), the store takes the entries as
        they are parsed, a chunk at a time, so the verify threads check one
        chunk while this thread parses the next and writes the one before."""
        if checked is None:
            report = self.store.ingest(parsed, chunk_size=_SYNC_CHUNK, refuse=self._blocked)
        else:
            report = self.store.ingest_checked(checked, refuse=self._blocked)
        entries, sources = parsed.entries, parsed.sources
        added = []
        for index in report.stored_indices:
            entry = entries[index]
            added.append(EntryAdded(entry.id, entry.author, entry.seq, entry.kind, sources[index]))
        bad = [
            source
            for index, error in report.rejected
            if isinstance(error, BadSignature) and (source := sources[index]) is not None
        ]
        return added, {feed: self.store.latest_seq(feed) for feed, _, _ in parsed.runs}, bad

    # --- staying connected ---------------------------------------------------------

    async def _maintain(self) -> None:
        """The connection manager: announce, keep peers, fill thin meshes."""
        next_announce = 0.0
        while True:
            now = trio.current_time()
            try:
                thin = self._thin_feeds()
                if len(self._connections) < self.options.target_peers or thin:
                    await self._find_peers(thin)
                contacts = await self._discovery.contacts()
            except Exception as exc:  # the DHT island must never end the node
                log.info("DHT upkeep failed: %r", exc)
            else:
                self._dht_contacts = len(contacts)
                if contacts:
                    with contextlib.suppress(StorageError):  # kept for the next start
                        await self._db(self.store.remember_dht_contacts, contacts)
            # After the dials: a restarted node reconnects first, as its
            # announcements may wait on DHT contacts that are gone.
            if now >= next_announce:
                await self._announce(sorted(self._scope))
                next_announce = now + self.options.announce_interval
            elif self._unannounced:
                await self._announce(sorted(self._unannounced))
            self._upkeep = trio.Event()
            with trio.move_on_after(self.options.maintain_interval):
                await self._upkeep.wait()

    async def _announce(self, feeds: Sequence[bytes]) -> None:
        """Publish our address and that we provide ``feeds`` (at most 64 per round)."""
        host, port = self.announce_address
        address = f"{host}:{port}"
        self._unannounced.difference_update(feeds[:_ANNOUNCE_PER_ROUND])
        try:
            await self._discovery.announce([address])
            for feed in feeds[:_ANNOUNCE_PER_ROUND]:
                await self._discovery.announce_provider(feed, [address])
        except Exception as exc:  # the DHT island must never end the node
            log.info("DHT announce failed: %r", exc)

    def _thin_feeds(self) -> list[bytes]:
        """Feeds whose mesh has fewer than ``d_low`` peers, shuffled; our own
        among them while we have entries that may not have reached our
        followers (since the start, or posted since we last looked them up
        and found one that joined our mesh).
        Followers that found each other form meshes among themselves, thin
        but not empty, and without this an island of them never hears us
        (docs/scaling.md measured 1.4% to 3% of follow pairs cut off)."""
        d_low = self.options.router.d_low
        thin = [
            feed
            for feed in self._scope
            if feed != self.me and len(self.router.mesh(feed_topic(feed))) < d_low
        ]
        own_mesh = len(self.router.mesh(feed_topic(self.me)))
        if self._own_sought and own_mesh:
            # Followers we looked up are in our mesh: they have our entries or
            # fetch them (heads on connect), and pass them on in their meshes.
            self._own_unheard = False
        if self._own_unheard and own_mesh < d_low:
            thin.append(self.me)
        random.shuffle(thin)
        # Feeds with no mesh peer at all first (sort is stable: still shuffled).
        thin.sort(key=lambda feed: bool(self.router.mesh(feed_topic(feed))))
        return thin

    async def _find_peers(self, thin: Sequence[bytes]) -> None:
        """Dial candidates: below the target peer count, seeds and the address
        book at once (before any DHT lookup, which may wait on contacts that
        are gone); then providers of feeds whose mesh is thin (while this
        node dialled fewer than twice the target peer count: however many
        peers dialled it, they may share none of its feeds), or below the
        target, of other followed feeds.

        A feed with no mesh peer at all gets up to :data:`_RESCUE_DIALS` of
        its providers dialled whatever the peer count, so that it reaches
        the feed's followers, by gossip or by sync, in any case, and a thin
        mesh one (it may be an island of followers cut off from the rest);
        providers already connected are not dialled, so this stops when a
        node has them all. Our own
        feed, while our posts may have reached nobody, up to ``d_low`` less
        its mesh (followers that found each other may form islands, and we
        may be the only node that knows them all).
        """
        now = trio.current_time()
        # Just started (or back from sleep, restarted): every thin feed at
        # once, so that a node with many follows is not minutes behind.
        starting = now - self._started < _STARTING
        lookups = list(thin[: _LOOKUPS_STARTING if starting else _LOOKUPS_PER_ROUND])
        limit = self.options.target_peers * (2 if lookups else 1)
        dialled: set[tuple[str, int]] = set()
        if len(self._connections) < self.options.target_peers:
            await self._dial_known(dialled)
            if not lookups:
                others = [feed for feed in self._scope if feed != self.me]
                lookups = random.sample(others, min(len(others), _LOOKUPS_PER_ROUND))
        providers = await self._find_providers(lookups)
        found: list[tuple[str, int, bytes | None]] = []
        rescue: list[tuple[str, int, bytes | None]] = []
        d_low = self.options.router.d_low
        for feed, records in zip(lookups, providers, strict=True):
            mesh = len(self.router.mesh(feed_topic(feed)))
            if feed == self.me:
                # Our posts may have reached nobody: as many followers as
                # make a mesh, wherever they are (they may form islands).
                rescues = d_low - mesh
            else:
                # One past the bound for a thin mesh: its peers may be an
                # island of followers that hears the feed from nobody.
                rescues = (_RESCUE_DIALS if not mesh else 1) if feed in thin else 0
            picked = 0
            for record in records:
                if record.identity not in self._connections and record.identity != self.me:
                    with contextlib.suppress(InvalidArgument):
                        candidate = (*parse_address(record.addresses[0]), record.identity)
                        if picked < rescues:
                            rescue.append(candidate)
                            picked += 1
                        else:
                            found.append(candidate)
        if self.me in lookups:
            # Our followers, if any, are being dialled; until one is in our
            # mesh we look again each round (dials fail: followers asleep,
            # away, backed off). Nobody provides our feed: no follower to
            # look for (one that comes later looks us up).
            records = providers[lookups.index(self.me)]
            self._own_sought = True
            if not any(record.identity != self.me for record in records):
                self._own_unheard = False
        self._dial_some(rescue, None, dialled, now)
        # Peers that dialled us, however many, may share nothing with us:
        # only the sessions we dialled count against the limit here.
        self._dial_some(found, limit, dialled, now, outbound_only=bool(thin))

    async def _find_providers(self, feeds: Sequence[bytes]) -> list[list[Record]]:
        """The DHT's providers of each of ``feeds``, up to
        :data:`_CONCURRENT_LOOKUPS` lookups at a time."""
        results: list[list[Record]] = [[] for _ in feeds]
        limiter = trio.CapacityLimiter(_CONCURRENT_LOOKUPS)

        async def look_up(index: int, feed: bytes) -> None:
            async with limiter:
                results[index] = list(await self._discovery.find_providers(feed))

        async with trio.open_nursery() as nursery:
            for index, feed in enumerate(feeds):
                nursery.start_soon(look_up, index, feed)
        return results

    async def _dial_known(self, dialled: set[tuple[str, int]] | None = None) -> None:
        """Start dialling seeds and the address book, up to the target peer
        count (``dialled``: the dials of this round, updated)."""
        known: list[tuple[str, int, bytes | None]] = [
            (host, port, None) for host, port in self.options.bootstrap
        ]
        for peer in await self._db(self.store.known_peers, limit=32):
            if peer.identity not in self._connections:
                with contextlib.suppress(InvalidArgument):
                    known.append((*parse_address(peer.addresses[0]), peer.identity))
        dialled = set() if dialled is None else dialled
        self._dial_some(known, self.options.target_peers, dialled, trio.current_time())

    def _dial_some(
        self,
        candidates: Sequence[tuple[str, int, bytes | None]],
        limit: int | None,
        dialled: set[tuple[str, int]],
        now: float,
        *,
        outbound_only: bool = False,
    ) -> None:
        """Start dialling ``candidates`` in order while sessions (those this
        node dialled, with ``outbound_only``) and the dials of this round
        (``dialled``, updated) stay below ``limit`` (``None``: no bound).
        Skips addresses connected, ours, dialled or backing off."""
        connected = {c.info.address for c in self._connections.values()}
        mine = {"{}:{}".format(*self.listen_address), "{}:{}".format(*self.announce_address)}
        sessions = sum(
            1 for c in self._connections.values() if c.info.outbound or not outbound_only
        )
        for host, port, identity in candidates:
            if limit is not None and sessions + len(dialled) >= limit:
                break
            address = f"{host}:{port}"
            if not self._backoff.ready((host, port), now) or (host, port) in dialled:
                continue
            if address in connected or address in mine:
                continue
            dialled.add((host, port))
            self._nursery.start_soon(self.dial, host, port, identity)


_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})
#: A documentation address (RFC 5737): asking the kernel for the route to it
#: names the interface of the default route; no packet is sent.
_ROUTE_PROBE: Final = ("192.0.2.1", 9)


def announced_address(
    listen: tuple[str, int],
    announce: tuple[str, int] | None,
    seeds: Sequence[tuple[str, int]] = (),
) -> tuple[str, int]:
    """The address to tell other nodes: ``announce`` if given; else ``listen``
    unless its host is a wildcard, which no other machine can dial; then the
    address of the local interface that routes to the first seed (or to the
    default route), with the listen port. Finding it sends no packet (a UDP
    socket's ``connect`` only picks the route); without any route it is
    127.0.0.1, which only this machine can dial.
    """
    if announce is not None:
        return announce
    host, port = listen
    if host not in _WILDCARDS:
        return listen
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    for target in [*seeds, _ROUTE_PROBE]:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(target)
                local = str(probe.getsockname()[0])
        except OSError:
            continue
        if local not in _WILDCARDS:
            return (local, port)
    return ("127.0.0.1", port)


@contextlib.asynccontextmanager
async def open_node(local: LocalNode, options: NodeOptions | None = None) -> AsyncIterator[Node]:
    """Run a node for ``local``'s identity and store until the block ends.

    The TCP listener is bound first, then the DHT (by default on the same
    port number over UDP), then the node starts its tasks. Raises
    :class:`InvalidArgument` if an address cannot be bound; the signing key
    is unlocked first, so a wrong passphrase fails before anything listens.
    """
    options = options or NodeOptions()
    key = local.signing_key()
    host, port = options.listen
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise InvalidArgument(f"cannot listen on {host}:{port}: {exc}") from exc
    bound = listeners[0].socket.getsockname()
    listen = (str(bound[0]), int(bound[1]))
    dht_port = listen[1] if options.dht_port is None else options.dht_port
    try:
        async with (
            open_discovery(
                key, host=host, port=dht_port, max_contacts_per_ip=options.max_contacts_per_ip
            ) as discovery,
            trio.open_nursery() as nursery,
        ):
            node = Node(local, options, nursery, discovery, listen)
            local.store.auto_checkpoint = False
            nursery.start_soon(node._checkpoints)
            await node._rescope()
            await nursery.start(trio.serve_listeners, node._serve, listeners)
            nursery.start_soon(node._heartbeats)
            nursery.start_soon(node._judge_deliveries)
            nursery.start_soon(node._ingest_sync)
            contacts = [*options.bootstrap, *await node._db(local.store.dht_contacts)]
            # Peers known from before come up while the DHT waits on contacts
            # that may be gone (up to _DIAL_TIMEOUT after a restart).
            await node._dial_known()
            if contacts:
                with trio.move_on_after(_DIAL_TIMEOUT):
                    try:
                        await discovery.bootstrap(contacts)
                    except Exception as exc:  # a seed's DHT answer must never end the node
                        log.info("DHT bootstrap failed: %r", exc)
            nursery.start_soon(node._maintain)
            if options.control:
                # Imported here: the control API is built on this module.
                from .control import serve_control

                await nursery.start(serve_control, node, local.home)
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with contextlib.suppress(StorageError):
            local.store.auto_checkpoint = True
        for listener in listeners:
            await trio.aclose_forcefully(listener)
