"""Swarms of real nodes on loopback, for tests and scripts.

:func:`open_swarm` starts ``n`` nodes in one process, each with its own
temporary data directory, free TCP and UDP ports on 127.0.0.1, the real
handshake and the real DHT, all bootstrapped from node 0 on a test network
key (so they never meet the public network). Helpers wait on events with a
deadline instead of sleeping::

    async with open_swarm(3) as swarm:
        await swarm.nodes[1].follow(swarm.nodes[0].me)
        entry = await swarm.nodes[0].post("hello")
        await swarm.wait_for_entry(1, entry.id, timeout=10)

Churn and partitions, for tests of a network that comes and goes:

- ``await swarm.stop(i)`` takes node ``i`` down (its data directory stays);
  ``await swarm.start(i)`` brings it back from that directory, on the same
  TCP and UDP port as before when it is free (a node's configured address),
  with no seed unless the options name one. :meth:`Swarm.running` lists the
  nodes up now.
- ``await swarm.partition([range(0, 8), range(8, 16)])`` cuts the swarm:
  each node reaches only the nodes of its own group (nodes named in no group
  form one more group). Sessions across the cut end, new ones are refused
  and dials across it fail, and the DHT drops datagrams from across it
  (:meth:`Node.set_test_reachable`, a hook for tests only). A node started
  during the cut stays on its side. ``await swarm.heal()`` lifts the cut;
  the nodes find each other again by themselves.
- ``await swarm.wait_for_heads(i, {feed: seq, ...})`` waits until node ``i``
  holds each feed up to its seq: "this follower has converged".
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import trio

from storage.errors import InvalidArgument, TorvError

from .home import Home
from .hostile import (
    ConnectionFlood,
    HostilePeer,
    connection_flood,
    forged_entries,
    hostile_peer,
    unlinked_entries,
)
from .local import LocalNode
from .runtime import Node, NodeOptions, open_node

__all__ = [
    "TEST_NETWORK_KEY",
    "ConnectionFlood",
    "HostilePeer",
    "Swarm",
    "SwarmTimeout",
    "connection_flood",
    "forged_entries",
    "hostile_peer",
    "open_swarm",
    "unlinked_entries",
]

#: The network key of test swarms: they cannot connect to the public network.
TEST_NETWORK_KEY = hashlib.sha256(b"torv test network").digest()


class SwarmTimeout(TorvError):
    """A swarm helper's condition did not hold before its deadline."""


class Swarm:
    """The running nodes of :func:`open_swarm`, with helpers to wait on them.

    ``nodes[i]`` is node ``i`` while it runs; :meth:`stop` and :meth:`start`
    take one node down and bring it back with the same data directory;
    :meth:`partition` and :meth:`heal` cut the swarm into groups and join it
    again (see the module docstring).
    """

    def __init__(self, nursery: trio.Nursery, root: Path, options: NodeOptions) -> None:
        self.nodes: list[Node] = []
        self.options = options
        self._nursery = nursery
        self._root = root
        self._stops: dict[int, trio.Event] = {}
        self._stopped: dict[int, trio.Event] = {}
        self._running: set[int] = set()
        # Who is who, kept across restarts, for the partition predicates.
        self._index_of_identity: dict[bytes, int] = {}
        self._index_of_dht: dict[tuple[str, int], int] = {}
        #: node index -> group number while the swarm is cut; None when whole.
        self._groups: dict[int, int] | None = None

    def home(self, index: int) -> Home:
        return Home(self._root / f"node{index}")

    def running(self) -> list[int]:
        """The indices of the nodes that run now, in order."""
        return sorted(self._running)

    async def _run(
        self, index: int, options: NodeOptions, *, task_status: trio.TaskStatus[Node]
    ) -> None:
        stop, stopped = trio.Event(), trio.Event()
        self._stops[index], self._stopped[index] = stop, stopped
        try:
            with LocalNode.open(self.home(index)) as local:
                async with open_node(local, options) as node:
                    self._index_of_identity[node.me] = index
                    self._index_of_dht[node.status().dht] = index
                    if self._groups is not None:
                        await self._cut(index, node)
                    # nodes[index] is the running node whenever running() lists it.
                    if index < len(self.nodes):
                        self.nodes[index] = node
                    else:
                        self.nodes.append(node)
                    self._running.add(index)
                    task_status.started(node)
                    await stop.wait()
        finally:
            self._running.discard(index)
            stopped.set()

    async def add(self, options: NodeOptions | None = None) -> Node:
        """Create and start one more node, bootstrapped from node 0."""
        index = len(self.nodes)
        LocalNode.init(self.home(index))
        node_options = options or self.options
        if self.nodes:
            node_options = replace(node_options, bootstrap=(self.nodes[0].listen_address,))
        node: Node = await self._nursery.start(self._run, index, node_options)
        return node

    async def stop(self, index: int) -> None:
        """Stop node ``index`` (its data stays)."""
        self._stops[index].set()
        await self._stopped[index].wait()

    async def start(self, index: int, options: NodeOptions | None = None) -> Node:
        """Start node ``index`` again from its data directory (no seed unless given).

        Unless ``options`` name a listen port, the node listens where it did
        before, or on a free port if that one has been taken meanwhile.
        """
        options = options or self.options
        node: Node
        if options.listen[1] == 0 and index < len(self.nodes):
            again = replace(options, listen=self.nodes[index].listen_address)
            try:
                node = await self._nursery.start(self._run, index, again)
            except InvalidArgument:
                node = await self._nursery.start(self._run, index, options)
        else:
            node = await self._nursery.start(self._run, index, options)
        return node

    # --- partitions -------------------------------------------------------------

    async def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Cut the swarm: each node reaches only the nodes of its own group.

        ``groups`` are node indices; nodes named in no group (also nodes
        added later) form one more group. Sessions across the cut end at
        once, and the running nodes' DHTs drop datagrams from across it.
        Replaces any cut made before.
        """
        self._groups = {index: number for number, group in enumerate(groups) for index in group}
        for index in self.running():
            await self._cut(index, self.nodes[index])

    async def heal(self) -> None:
        """Lift the cut of :meth:`partition`: every node may reach every other again."""
        self._groups = None
        for index in self.running():
            await self.nodes[index].set_test_reachable(None, None)

    def _group(self, index: int | None) -> int:
        assert self._groups is not None
        return -2 if index is None else self._groups.get(index, -1)

    async def _cut(self, index: int, node: Node) -> None:
        def same_side(other: int | None) -> bool:
            # Read at each call: a cut replaced or lifted takes effect at once.
            return self._groups is None or self._group(index) == self._group(other)

        await node.set_test_reachable(
            lambda peer: same_side(self._index_of_identity.get(peer)),
            lambda address: same_side(self._index_of_dht.get(address)),
        )

    async def wait_for_entry(self, index: int, entry_id: bytes, timeout: float = 10.0) -> None:
        """Wait until node ``index`` holds ``entry_id``; raise :class:`SwarmTimeout`."""
        node = self.nodes[index]
        await self._wait(
            node,
            lambda: node.store.find(entry_id) is not None,
            timeout,
            f"node {index} did not get entry {entry_id.hex()[:10]} within {timeout} s",
        )

    async def wait_for_seq(self, index: int, feed: bytes, seq: int, timeout: float = 10.0) -> None:
        """Wait until node ``index`` holds ``feed`` up to ``seq``."""
        node = self.nodes[index]
        await self._wait(
            node,
            lambda: node.store.latest_seq(feed) >= seq,
            timeout,
            f"node {index} did not reach seq {seq} of {feed.hex()[:10]} within {timeout} s",
        )

    async def wait_for_heads(
        self, index: int, heads: Mapping[bytes, int], timeout: float = 10.0
    ) -> None:
        """Wait until node ``index`` holds every feed of ``heads`` up to its seq."""
        node = self.nodes[index]
        wanted = dict(heads)

        def holds() -> bool:
            return all(node.store.latest_seq(feed) >= seq for feed, seq in wanted.items())

        await self._wait(node, holds, timeout, f"node {index} did not converge within {timeout} s")

    async def wait_for_peer(self, index: int, peer: bytes, timeout: float = 10.0) -> None:
        """Wait until node ``index`` has a session with ``peer``."""
        node = self.nodes[index]
        await self._wait(
            node,
            lambda: any(info.identity == peer for info in node.peers()),
            timeout,
            f"node {index} did not connect to {peer.hex()[:10]} within {timeout} s",
        )

    async def _wait(
        self, node: Node, condition: Callable[[], bool], timeout: float, message: str
    ) -> None:
        # Subscribe first, then check, then wait for events: no event can slip
        # between the check and the wait. A busy node may drop events for a
        # slow reader, so the queue is drained before each check and the
        # condition is checked at least once a second as well.
        with trio.move_on_after(timeout):
            async with node.events() as events:
                while not await node._db(condition):
                    with trio.move_on_after(1.0):
                        await events.receive()
                    with contextlib.suppress(trio.WouldBlock):
                        while True:
                            events.receive_nowait()
                return
        raise SwarmTimeout(message)


@contextlib.asynccontextmanager
async def open_swarm(
    count: int, *, options: NodeOptions | None = None, directory: Path | None = None
) -> AsyncIterator[Swarm]:
    """Start ``count`` nodes on loopback; stop them and remove their data at the end.

    ``options`` are the base options of every node (listen address, seeds
    and network key are set by the swarm); ``directory`` keeps the data
    directories there instead of in a temporary directory.
    """
    base = replace(
        options or NodeOptions(),
        listen=("127.0.0.1", 0),
        network_key=TEST_NETWORK_KEY,
        max_contacts_per_ip=None,
        bootstrap=(),
    )
    with contextlib.ExitStack() as files:
        root = directory or Path(files.enter_context(tempfile.TemporaryDirectory(prefix="torv-")))
        async with trio.open_nursery() as nursery:
            swarm = Swarm(nursery, root, base)
            for _ in range(count):
                node = await swarm.add()
                if len(swarm.nodes) > 1:
                    await node.dial(*swarm.nodes[0].listen_address)
            try:
                yield swarm
            finally:
                nursery.cancel_scope.cancel()
