"""A simulated network of gossip routers joined by fake links.

Discrete events on a simulated clock: every message drained from a router
reaches its peer after the link's latency (links are FIFO, as TCP is); the
"node" judges every delivery after ``validation_delay`` (accepted, unless it
is one of the forged entries); a reported disconnect closes the link at both
ends; every router gets a heartbeat each simulated second, at its own phase.
Some links may drop entry messages, as a driver that sheds load would.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from gossip.router import GossipMessage, Router, RouterParams, Verdict
from gossip.wire import EntryMessage, IWant, RawEntry
from storage.entry import entry_id


@dataclass(frozen=True, slots=True)
class SimReport:
    """What a run measured: every subscriber but the author should get each entry."""

    expected: int  # (subscriber, entry) pairs
    delivered: int
    copies: int  # entry messages received by those subscribers, duplicates included
    disconnects: int
    latencies: tuple[float, ...]  # publish -> delivery, one per delivered pair

    @property
    def delivery_ratio(self) -> float:
        return self.delivered / self.expected if self.expected else 1.0

    @property
    def redundancy(self) -> float:
        """Copies received per delivered entry (1.0 is no duplicate at all)."""
        return self.copies / self.delivered if self.delivered else 0.0


@dataclass(frozen=True, slots=True)
class _Link:
    latency: float
    loss: float


@dataclass(frozen=True, slots=True)
class _Send:
    src: int
    dst: int
    message: GossipMessage


@dataclass(frozen=True, slots=True)
class _Validate:
    node: int
    entry_id: bytes


@dataclass(frozen=True, slots=True)
class _Heartbeat:
    node: int


@dataclass(frozen=True, slots=True)
class _Publish:
    node: int
    entry_id: bytes
    message: EntryMessage


_Action = _Send | _Validate | _Heartbeat | _Publish


@dataclass(order=True, slots=True)
class _Event:
    time: float
    seq: int
    action: _Action = field(compare=False)


class SimNet:
    """``n`` routers on a random connected graph of ``degree`` peers on
    average (``degree // 2`` at least), all joined to ``topics``."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        degree: int = 8,
        params: RouterParams | None = None,
        topics: tuple[str, ...] = ("square",),
        latency: tuple[float, float] = (0.005, 0.05),
        lossy_links: float = 0.0,
        loss: float = 0.0,
        validation_delay: float = 0.002,
    ) -> None:
        self.rng = random.Random(seed)
        self.params = params or RouterParams()
        self.names = [self.rng.randbytes(32) for _ in range(n)]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.routers = [
            Router(name, self.params, random.Random(self.rng.random())) for name in self.names
        ]
        self.topics = topics
        self.validation_delay = validation_delay
        self.now = 0.0
        self.links: dict[tuple[int, int], _Link] = {}
        self._events: list[_Event] = []
        self._seq = itertools.count()
        self._published: dict[bytes, tuple[int, float]] = {}  # id -> (author, time)
        self.forged: set[bytes] = set()
        self.copies: Counter[tuple[int, bytes]] = Counter()
        self.delivered: dict[tuple[int, bytes], float] = {}
        self.disconnects: list[tuple[int, int, str]] = []
        self.sent: Counter[str] = Counter()  # messages by type, lost ones included
        self._requested: set[tuple[int, bytes]] = set()  # (node, id) it sent IWANT for
        self.via_iwant = 0  # deliveries of ids the node had asked for (mesh lost or slower)
        # Each node dials degree/2 random others, as a connection manager
        # with a peer target would: at least degree/2 peers each, degree on average.
        for a in range(n):
            for b in self.rng.sample([b for b in range(n) if b != a], degree // 2):
                if (a, b) not in self.links:
                    self._connect(a, b, latency, lossy_links, loss)
        if not self._connected():
            raise ValueError(f"seed {seed} gives a partitioned network: choose another")
        for i, router in enumerate(self.routers):
            for topic in topics:
                router.join(topic, self.now)
            self._flush(i)
            self._at(self.rng.random() * self.params.heartbeat_interval, _Heartbeat(i))

    def _connect(
        self, a: int, b: int, latency: tuple[float, float], lossy_links: float, loss: float
    ) -> None:
        link = _Link(self.rng.uniform(*latency), loss if self.rng.random() < lossy_links else 0.0)
        self.links[a, b] = self.links[b, a] = link
        self.routers[a].add_peer(self.names[b], self.now)
        self.routers[b].add_peer(self.names[a], self.now)
        self._flush(a)
        self._flush(b)

    def _connected(self) -> bool:
        reached, frontier = {0}, [0]
        while frontier:
            a = frontier.pop()
            for b in range(len(self.routers)):
                if (a, b) in self.links and b not in reached:
                    reached.add(b)
                    frontier.append(b)
        return len(reached) == len(self.routers)

    def degree(self, i: int) -> int:
        return sum(1 for a, _ in self.links if a == i)

    # --- driving --------------------------------------------------------------

    def publish(self, author: int, at: float, size: int = 200, *, forged: bool = False) -> bytes:
        """Schedule a new entry by ``author`` at time ``at``; returns its id.
        Every node rejects a forged entry."""
        raw = RawEntry(self.rng.randbytes(100), self.rng.randbytes(64), self.rng.randbytes(size))
        eid = entry_id(raw.header, raw.signature)
        if forged:
            self.forged.add(eid)
        else:
            self._published[eid] = (author, at)
        self._at(at, _Publish(author, eid, EntryMessage(self.topics, raw)))
        return eid

    def run(self, until: float) -> None:
        while self._events and self._events[0].time <= until:
            event = heapq.heappop(self._events)
            self.now = event.time
            self._do(event.action)
        self.now = until

    def report(self, exclude: frozenset[int] = frozenset()) -> SimReport:
        expected = delivered = copies = 0
        latencies = []
        for eid, (author, at) in self._published.items():
            for i in range(len(self.routers)):
                if i == author or i in exclude:
                    continue
                expected += 1
                copies += self.copies[i, eid]
                if (i, eid) in self.delivered:
                    delivered += 1
                    latencies.append(self.delivered[i, eid] - at)
        return SimReport(expected, delivered, copies, len(self.disconnects), tuple(latencies))

    def _at(self, time: float, action: _Action) -> None:
        heapq.heappush(self._events, _Event(time, next(self._seq), action))

    def _do(self, action: _Action) -> None:
        match action:
            case _Send(src, dst, message):
                if (src, dst) not in self.links:
                    return  # hung up while in flight
                router, sender = self.routers[dst], self.names[src]
                if isinstance(message, EntryMessage):
                    eid = entry_id(message.entry.header, message.entry.signature)
                    self.copies[dst, eid] += 1
                    router.handle_entry(sender, eid, message, self.now)
                else:
                    router.handle(sender, message, self.now)
                self._flush(dst)
            case _Validate(node, eid):
                verdict = Verdict.REJECT if eid in self.forged else Verdict.ACCEPT
                self.routers[node].validated(eid, verdict, self.now)
                self._flush(node)
            case _Heartbeat(node):
                self.routers[node].heartbeat(self.now)
                self._flush(node)
                self._at(self.now + self.params.heartbeat_interval, action)
            case _Publish(node, eid, message):
                self.routers[node].publish(eid, message, self.now)
                self._flush(node)

    def _flush(self, i: int) -> None:
        router = self.routers[i]
        for peer, message in router.drain():
            j = self.index[peer]
            link = self.links[i, j]
            self.sent[message.type] += 1
            if isinstance(message, IWant):
                self._requested.update((i, eid) for eid in message.ids)
            if link.loss and isinstance(message, EntryMessage) and self.rng.random() < link.loss:
                continue
            self._at(self.now + link.latency, _Send(i, j, message))
        for delivery in router.deliveries():
            self.via_iwant += (i, delivery.entry_id) in self._requested
            self.delivered.setdefault((i, delivery.entry_id), self.now)
            self._at(self.now + self.validation_delay, _Validate(i, delivery.entry_id))
        for peer, reason in router.disconnects():
            j = self.index[peer]
            self.disconnects.append((i, j, reason))
            del self.links[i, j], self.links[j, i]
            router.remove_peer(peer, self.now)
            self.routers[j].remove_peer(self.names[i], self.now)
            self._flush(j)
