"""Discovery: the ``kademlia`` DHT on its own asyncio island, behind a trio API.

The ``kademlia`` package is asyncio-only. It runs on an event loop in one
dedicated thread; the node sees only :class:`Discovery` (``announce``,
``find_peer``, ``announce_provider``, ``find_providers``), whose methods hand
coroutines to that loop and await their results from trio. Nothing from the
island can end the node: every exception from a datagram is caught and
counted, and the loop's exception handler counts the rest.

The stock package is hardened by subclassing (DESIGN.md, Discovery):

- :class:`RecordStorage` stores only values that verify as signed records
  for their key (``node.records``), newest address record wins, provider sets
  merge, expired records vanish, and the number of keys is bounded. It never
  pickles anything (the package's ``save_state`` is not used).
- Lookups ask every one of the k nodes nearest the key and merge what they
  hold (:func:`merge_values`): the newest valid address record wins, provider
  sets are united. The stock lookup stops at the first answers and returns
  the value most of them hold, which may be stale or forged.
- :class:`HardenedProtocol` drops oversize datagrams, checks every RPC's
  argument types and every response's shape, caps routing-table contacts per
  IP address, and republishes stored keys to new nodes under the right key
  (the stock ``welcome_if_new`` hashes the already-hashed key again).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kademlia.crawling import RPCFindResponse, ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol

from storage.errors import InvalidArgument

from .records import (
    BadRecord,
    Record,
    address_key,
    decode_record_untrusted,
    decode_value_for_digest_untrusted,
    dht_node_id,
    encode_provider_set,
    key_digest,
    merge_provider_sets,
    newer_address,
    provider_key,
    sign_record,
)

__all__ = ["Discovery", "HardenedProtocol", "RecordStorage", "merge_values", "open_discovery"]

log = logging.getLogger("torv.discovery")
# The package logs every unanswered datagram, which is normal on a network.
# Without a handler Python prints warnings to stderr: give its loggers one
# that drops them, unless the application configures logging itself.
for _package in ("kademlia", "rpcudp"):
    logging.getLogger(_package).addHandler(logging.NullHandler())

#: rpcudp refuses to send more than 8 KiB of arguments; nothing larger is ours.
MAX_DATAGRAM: Final = 8192 + 64
MAX_STORED_KEYS: Final = 20_000
RECORD_LIFETIME: Final = 3600
_RPCS: Final = {"ping": 1, "store": 3, "find_node": 2, "find_value": 2, "stun": 0}

T = TypeVar("T")


class RecordStorage:
    """The values this DHT node holds for others: only signed, current records.

    Implements the storage interface the ``kademlia`` package expects
    (``__setitem__``, ``get``, ``__iter__``, ``iter_older_than``).
    """

    def __init__(self, *, max_keys: int = MAX_STORED_KEYS, clock: Callable[[], float] = time.time):
        self._values: dict[bytes, tuple[list[Record], float]] = {}
        self._max_keys = max_keys
        self.clock = clock

    def offer(self, digest: bytes, value: object) -> bool:
        """Store ``value`` under ``digest`` if it verifies; True if it was accepted."""
        if not isinstance(digest, bytes) or len(digest) != 20 or not isinstance(value, bytes):
            return False
        now = self.clock()
        try:
            records = decode_value_for_digest_untrusted(digest, value, now)
        except BadRecord as exc:
            log.debug("refused a DHT value: %s", exc)
            return False
        held = self._current(digest, now)
        if held is None and len(self._values) >= self._max_keys:
            self._expire(now)
            if len(self._values) >= self._max_keys:
                return False
        if records[0].kind == "addr":
            if held is not None and not newer_address(held[0], records[0]):
                return held[0].encoded == records[0].encoded
            self._values[digest] = (records, now)
        else:
            self._values[digest] = (merge_provider_sets(held or [], records, now), now)
        return True

    def __setitem__(self, digest: bytes, value: bytes) -> None:
        self.offer(digest, value)

    def _current(self, digest: bytes, now: float) -> list[Record] | None:
        entry = self._values.get(digest)
        if entry is None:
            return None
        records = [record for record in entry[0] if record.expires > now]
        if not records:
            del self._values[digest]
            return None
        return records

    def _expire(self, now: float) -> None:
        for digest in list(self._values):
            self._current(digest, now)

    def _encode(self, records: list[Record]) -> bytes:
        return records[0].encoded if records[0].kind == "addr" else encode_provider_set(records)

    def get(self, digest: bytes, default: bytes | None = None) -> bytes | None:
        records = self._current(digest, self.clock())
        return default if records is None else self._encode(records)

    def __getitem__(self, digest: bytes) -> bytes:
        value = self.get(digest)
        if value is None:
            raise KeyError(digest)
        return value

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        now = self.clock()
        for digest in list(self._values):
            records = self._current(digest, now)
            if records is not None:
                yield digest, self._encode(records)

    def iter_older_than(self, seconds_old: float) -> Iterator[tuple[bytes, bytes]]:
        now = self.clock()
        for digest, (_, stored) in list(self._values.items()):
            records = self._current(digest, now)
            if records is not None and now - stored >= seconds_old:
                yield digest, self._encode(records)

    def __len__(self) -> int:
        return len(self._values)


def merge_values(digest: bytes, values: Sequence[object], now: float) -> bytes | None:
    """One value from what several DHT nodes returned for ``digest``.

    Values that are not valid, current records for the key are dropped. Of
    address records the newest (highest seq) wins; provider sets are merged
    (:func:`merge_provider_sets`). ``None`` if nothing valid is left.
    """
    newest: Record | None = None
    providers: list[Record] = []
    for value in values:
        if not isinstance(value, bytes):
            continue
        try:
            records = decode_value_for_digest_untrusted(digest, value, now)
        except BadRecord:
            continue
        if records[0].kind == "addr":
            if newer_address(newest, records[0]):
                newest = records[0]
        else:
            providers = merge_provider_sets(providers, records, now)
    if newest is not None:
        return newest.encoded
    return encode_provider_set(providers) if providers else None


class _MergingValueCrawl(ValueSpiderCrawl):  # type: ignore[misc]
    """A value lookup that asks all of the k nearest nodes and merges their values."""

    def __init__(self, *args: Any, local: bytes | None, clock: Callable[[], float]) -> None:
        super().__init__(*args)
        self._values: list[object] = [] if local is None else [local]
        self._clock = clock

    async def _nodes_found(self, responses: dict[bytes, Any]) -> bytes | None:
        unreachable = []
        for peer_id, answer in responses.items():
            response = RPCFindResponse(answer)
            if not response.happened():
                unreachable.append(peer_id)
            elif response.has_value():
                self._values.append(response.get_value())
            else:
                self.nearest_without_value.push(self.nearest.get_node(peer_id))
                self.nearest.push(response.get_node_list())
        self.nearest.remove(unreachable)
        if not self.nearest.have_contacted_all():
            result: bytes | None = await self.find()
            return result
        merged = merge_values(self.node.id, self._values, self._clock())
        # As the stock lookup does: the nearest node without the value gets it.
        peer = self.nearest_without_value.popleft()
        if merged is not None and peer is not None:
            await self.protocol.call_store(peer, self.node.id, merged)
        return merged


def _is_node_id(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 20


def _valid_args(name: str, args: object) -> bool:
    if not isinstance(args, list | tuple) or len(args) != _RPCS[name]:
        return False
    if name in ("ping", "find_node", "find_value", "store") and not _is_node_id(args[0]):
        return False
    if name in ("find_node", "find_value", "store") and not _is_node_id(args[1]):
        return False
    return name != "store" or isinstance(args[2], bytes)


def _valid_contacts(value: object, limit: int) -> bool:
    if not isinstance(value, list) or len(value) > limit:
        return False
    for contact in value:
        if not isinstance(contact, list | tuple) or len(contact) != 3:
            return False
        node_id, ip, port = contact
        if not _is_node_id(node_id) or not isinstance(ip, str) or type(port) is not int:
            return False
        if not 1 <= port <= 65535:
            return False
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return False
    return True


class HardenedProtocol(KademliaProtocol):  # type: ignore[misc]
    """The stock protocol, checked at every edge (see the module docstring)."""

    def __init__(
        self,
        source_node: Node,
        storage: RecordStorage,
        ksize: int,
        *,
        max_contacts_per_ip: int | None,
        counters: Counter[str],
    ) -> None:
        super().__init__(source_node, storage, ksize)
        self._max_contacts_per_ip = max_contacts_per_ip
        self.counters = counters
        self._tasks: set[asyncio.Task[None]] = set()
        #: Test only (see :meth:`Discovery.set_test_reachable`).
        self.test_reachable: Callable[[tuple[str, int]], bool] | None = None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # Keep a reference: the loop holds only weak ones to running tasks.
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.test_reachable is not None and not self.test_reachable(addr):
            self.counters["dropped: test partition"] += 1
            return
        if len(data) > MAX_DATAGRAM or len(data) < 22:
            self.counters["dropped: bad size"] += 1
            return
        self._spawn(self._guarded(data, addr))

    async def _guarded(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            await self._solve_datagram(data, addr)
        except Exception as exc:  # a peer's datagram must never end the island
            self.counters[f"dropped: {type(exc).__name__}"] += 1
            log.debug("dropped a datagram from %s: %r", addr, exc)

    async def _accept_request(self, msg_id: bytes, data: object, address: tuple[str, int]) -> None:
        if (
            not isinstance(data, list)
            or len(data) != 2
            # A list or map as the name is unhashable: test the type first.
            or not isinstance(data[0], str)
            or data[0] not in _RPCS
            or not _valid_args(data[0], data[1])
        ):
            self.counters["dropped: malformed request"] += 1
            return
        await super()._accept_request(msg_id, data, address)

    def rpc_store(self, sender: tuple[str, int], nodeid: bytes, key: bytes, value: bytes) -> bool:
        self.welcome_if_new(Node(nodeid, sender[0], sender[1]))
        accepted: bool = self.storage.offer(key, value)
        if not accepted:
            self.counters["refused: store"] += 1
        return accepted

    async def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> Any:
        result = await super().call_find_node(node_to_ask, node_to_find)
        if result[0] and not _valid_contacts(result[1], self.router.ksize):
            self.counters["dropped: malformed response"] += 1
            return (False, None)
        return result

    async def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> Any:
        result = await super().call_find_value(node_to_ask, node_to_find)
        if result[0]:
            value = result[1]
            good = (
                isinstance(value, dict)
                and set(value) == {"value"}
                and isinstance(value["value"], bytes)
            ) or _valid_contacts(value, self.router.ksize)
            if not good:
                self.counters["dropped: malformed response"] += 1
                return (False, None)
        return result

    def welcome_if_new(self, node: Node) -> None:
        if not self.router.is_new_node(node):
            return
        if self._max_contacts_per_ip is not None:
            same_ip = sum(
                1
                for bucket in self.router.buckets
                for contact in bucket.get_nodes()
                if contact.ip == node.ip
            )
            if same_ip >= self._max_contacts_per_ip:
                self.counters["refused: contacts per ip"] += 1
                return
        for digest, value in self.storage:
            keynode = Node(digest)
            neighbors = self.router.find_neighbors(keynode)
            if neighbors:
                last = neighbors[-1].distance_to(keynode)
                new_node_close = node.distance_to(keynode) < last
                first = neighbors[0].distance_to(keynode)
                this_closest = self.source_node.distance_to(keynode) < first
            if not neighbors or (new_node_close and this_closest):
                self._spawn(self._store_quietly(node, digest, value))
        self.router.add_contact(node)

    async def _store_quietly(self, node: Node, digest: bytes, value: bytes) -> None:
        await self.call_store(node, digest, value)


class _TorvServer(Server):  # type: ignore[misc]
    protocol_class = HardenedProtocol

    def __init__(
        self, *, node_id: bytes, storage: RecordStorage, max_contacts_per_ip: int | None
    ) -> None:
        super().__init__(ksize=20, alpha=3, node_id=node_id, storage=storage)
        # The stock constructor does `storage or ForgetfulStorage()`, and an
        # empty RecordStorage is falsy (it has a length): set it explicitly.
        self.storage = storage
        self.counters: Counter[str] = Counter()
        self._max_contacts_per_ip = max_contacts_per_ip

    async def get(self, key: bytes) -> bytes | None:
        """The merged value the network holds for ``key`` (:func:`merge_values`)."""
        dkey = key_digest(key)
        local = self.storage.get(dkey)
        nearest = self.protocol.router.find_neighbors(Node(dkey))
        if not nearest:
            return local if isinstance(local, bytes) else None
        crawl = _MergingValueCrawl(
            self.protocol,
            Node(dkey),
            nearest,
            self.ksize,
            self.alpha,
            local=local,
            clock=self.storage.clock,
        )
        result: bytes | None = await crawl.find()
        return result

    def _create_protocol(self) -> HardenedProtocol:
        return HardenedProtocol(
            self.node,
            self.storage,
            self.ksize,
            max_contacts_per_ip=self._max_contacts_per_ip,
            counters=self.counters,
        )


class _Island:
    """An asyncio event loop running in its own thread."""

    def __init__(self, counters: Counter[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self._counters = counters
        self._thread = threading.Thread(target=self._run, name="torv-dht", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._on_error)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self._counters["island errors"] += 1
        log.debug("DHT island: %s", context.get("message"), exc_info=context.get("exception"))

    def start(self) -> None:
        self._thread.start()

    async def call(self, coroutine: Awaitable[T]) -> T:
        """Run ``coroutine`` on the island and await its result from trio."""

        async def wrapped() -> T:
            return await coroutine

        future = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()
        future.add_done_callback(lambda _: token.run_sync_soon(done.set))
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        return future.result()

    async def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        await trio.to_thread.run_sync(self._thread.join)


@dataclass(frozen=True, slots=True)
class DhtStats:
    contacts: int
    stored_keys: int
    counters: dict[str, int]


class Discovery:
    """The DHT as the node sees it. Create with :func:`open_discovery`."""

    def __init__(
        self,
        island: _Island,
        server: _TorvServer,
        key: Ed25519PrivateKey,
        address: tuple[str, int],
        clock: Callable[[], float],
    ) -> None:
        self._island = island
        self._server = server
        self._key = key
        self.address = address
        self._clock = clock

    @property
    def identity(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    async def bootstrap(self, addresses: Sequence[tuple[str, int]]) -> int:
        """Contact known DHT nodes; return how many answered."""
        nodes = await self._island.call(self._server.bootstrap(list(addresses)))
        return len(nodes)

    def _record(self, addresses: Sequence[str], feed: bytes | None = None) -> bytes:
        now = self._clock()
        return sign_record(
            self._key,
            addresses=tuple(addresses),
            seq=int(now * 1000),
            expires=int(now) + RECORD_LIFETIME,
            feed=feed,
        )

    async def announce(self, addresses: Sequence[str]) -> bool:
        """Publish where this node listens (``HOST:PORT`` each); True if stored somewhere."""
        value = self._record(addresses)
        return bool(await self._island.call(self._server.set(address_key(self.identity), value)))

    async def announce_provider(self, feed: bytes, addresses: Sequence[str]) -> bool:
        """Publish that this node replicates ``feed`` and can be reached at ``addresses``."""
        record = decode_record_untrusted(self._record(addresses, feed), self._clock())
        value = encode_provider_set([record])
        return bool(await self._island.call(self._server.set(provider_key(feed), value)))

    async def _lookup(self, key: bytes) -> list[Record]:
        value = await self._island.call(self._server.get(key))
        if not isinstance(value, bytes):
            return []
        try:
            return decode_value_for_digest_untrusted(key_digest(key), value, self._clock())
        except BadRecord as exc:
            self._server.counters["refused: lookup"] += 1
            log.info("a DHT lookup returned a bad value: %s", exc)
            return []

    async def find_peer(self, identity: bytes) -> Record | None:
        """The newest valid address record of ``identity``, or ``None``."""
        records = await self._lookup(address_key(identity))
        return records[0] if records else None

    async def find_providers(self, feed: bytes) -> list[Record]:
        """Valid provider records of ``feed`` (possibly empty)."""
        return await self._lookup(provider_key(feed))

    async def contacts(self) -> list[tuple[str, int]]:
        """The DHT nodes in the routing table (read on the island, which owns it)."""

        async def read() -> list[tuple[str, int]]:
            protocol = self._server.protocol
            if protocol is None:
                return []
            return [
                (node.ip, node.port)
                for bucket in protocol.router.buckets
                for node in bucket.get_nodes()
            ]

        return await self._island.call(read())

    async def set_test_reachable(
        self, reachable: Callable[[tuple[str, int]], bool] | None
    ) -> None:
        """Test only (``node.testing``'s partitions): drop every datagram from
        a UDP address that ``reachable`` refuses, as if the network lost it;
        ``None`` lets everything through again. Never used by a real node."""

        async def apply() -> None:
            if self._server.protocol is not None:
                self._server.protocol.test_reachable = reachable

        await self._island.call(apply())

    async def stats(self) -> DhtStats:
        contacts = await self.contacts()

        async def read() -> tuple[int, dict[str, int]]:
            return len(self._server.storage), dict(self._server.counters)

        stored, counters = await self._island.call(read())
        return DhtStats(len(contacts), stored, counters)


@contextlib.asynccontextmanager
async def open_discovery(
    key: Ed25519PrivateKey,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_contacts_per_ip: int | None = 8,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Discovery]:
    """Start a DHT node on UDP ``host:port`` (0: any free port) for ``key``'s identity.

    The island's thread is joined when the block exits. Raises
    :class:`InvalidArgument` if the address cannot be bound.
    """
    identity = key.public_key().public_bytes_raw()
    storage = RecordStorage(clock=clock)
    server = _TorvServer(
        node_id=dht_node_id(identity), storage=storage, max_contacts_per_ip=max_contacts_per_ip
    )
    island = _Island(server.counters)
    island.start()
    try:
        try:
            await island.call(server.listen(port, host))
        except OSError as exc:
            raise InvalidArgument(f"cannot listen for the DHT on {host}:{port}: {exc}") from exc
        bound = server.transport.get_extra_info("sockname")
        yield Discovery(island, server, key, (bound[0], bound[1]), clock)
    finally:
        with trio.CancelScope(shield=True):
            await island.call(_stop(server))
            await island.stop()


async def _stop(server: _TorvServer) -> None:
    server.stop()
