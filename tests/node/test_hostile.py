"""Hostile peers (``node.hostile``) against a swarm of three honest nodes.

For each attack on node 0: it goes on serving honest peers (its post reaches
its follower, node 1, and a post of node 2, which it follows, reaches it),
it hangs up on the attacker, it scores protocol misbehaviour (and refuses a
forger that comes back), and what the attacker can make it hold stays
within its bounds. Every wait has a deadline; nothing is timed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.router import RouterParams
from gossip.wire import feed_topic
from node.runtime import Node, NodeOptions, PeerDown
from node.testing import HostilePeer, Swarm, connection_flood, hostile_peer, open_swarm

#: Small bounds, so that a test reaches them with few connections.
OPTIONS = replace(NodeOptions(), handshake_timeout=1.0, max_handshakes=8, max_inbound=16)
#: Generous: each wait ends as soon as its condition holds.
DEADLINE = 15.0
HONEST_PEERS = 2


class _Departures:
    """Why each peer's session with the target ended, as the target says."""

    def __init__(self) -> None:
        self.reasons: dict[bytes, list[str]] = {}
        self._changed = trio.Event()

    async def watch(self, node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        async with node.events() as events:
            task_status.started()
            async for event in events:
                if isinstance(event, PeerDown):
                    self.reasons.setdefault(event.identity, []).append(event.reason)
                    self._changed.set()
                    self._changed = trio.Event()

    async def reasons_of(self, identity: bytes, count: int = 1) -> list[str]:
        """The first ``count`` reasons ``identity``'s sessions ended (within the deadline)."""
        with trio.fail_after(DEADLINE):
            while len(self.reasons.get(identity, [])) < count:
                await self._changed.wait()
        return self.reasons[identity][:count]


@contextlib.asynccontextmanager
async def _attacked(
    options: NodeOptions = OPTIONS,
) -> AsyncIterator[tuple[Swarm, Node, _Departures]]:
    """Three honest nodes (node 1 follows node 0, node 0 follows node 2) that
    have shown they work; node 0 is the target."""
    with trio.fail_after(60):
        async with open_swarm(3, options=options) as swarm, trio.open_nursery() as nursery:
            target = swarm.nodes[0]
            await swarm.nodes[1].follow(target.me)
            await target.follow(swarm.nodes[2].me)
            await _serves_honest_peers(swarm)
            departures = _Departures()
            await nursery.start(departures.watch, target)
            yield swarm, target, departures
            nursery.cancel_scope.cancel()


async def _serves_honest_peers(swarm: Swarm) -> None:
    target, _, followed = swarm.nodes[:3]
    entry = await target.post("from the target")
    await swarm.wait_for_entry(1, entry.id, timeout=DEADLINE)
    entry = await followed.post("to the target")
    await swarm.wait_for_entry(0, entry.id, timeout=DEADLINE)


def _only_honest_sessions(target: Node) -> None:
    assert len(target.peers()) == HONEST_PEERS
    assert target.router.stats().peers == HONEST_PEERS


# --- malformed bytes: the connection ends at once ------------------------------------

MALFORMED: dict[str, tuple[Callable[[HostilePeer], Awaitable[int]], str]] = {
    "garbage frames": (lambda a: a.send_garbage_frames(3), "does not decrypt"),
    "garbage messages": (lambda a: a.send_garbage_messages(3), "bad message"),
    "oversize message": (lambda a: a.send_oversize(), "larger than"),
}


@pytest.mark.trio
@pytest.mark.parametrize("attack", MALFORMED)
async def test_malformed_bytes_end_the_session_and_honest_peers_are_served(attack: str) -> None:
    send, reason = MALFORMED[attack]
    async with _attacked() as (swarm, target, departures):
        async with hostile_peer(target) as attacker:
            assert await send(attacker) > 0
            assert await attacker.wait_closed(DEADLINE)
        assert reason in (await departures.reasons_of(attacker.identity))[0]
        await _serves_honest_peers(swarm)
        _only_honest_sessions(target)


# --- protocol misbehaviour: scored until the attacker is cut off ----------------------


async def _forged(attacker: HostilePeer, swarm: Swarm) -> None:
    followed = swarm.nodes[2].me
    await attacker.send_forged(followed, 10, first_seq=2)


async def _forged_by_sync(attacker: HostilePeer, swarm: Swarm) -> None:
    # Offered more of a feed it follows, the target asks, and the answers
    # do not verify.
    await attacker.serve_forged(swarm.nodes[2].me, 12)


async def _unlinked(attacker: HostilePeer, swarm: Swarm) -> None:
    await swarm.nodes[0].follow(attacker.identity)
    await attacker.send_unlinked(10)


async def _iwant_flood(attacker: HostilePeer, swarm: Swarm) -> None:
    entry = await swarm.nodes[0].post("cached, so IWANT is answered")
    await attacker.flood_iwant([entry.id], 4 * RouterParams().max_iwant_heeded)


async def _graft_in_backoff(attacker: HostilePeer, swarm: Swarm) -> None:
    await attacker.flood_graft(feed_topic(swarm.nodes[2].me), 100)


async def _graft_again(attacker: HostilePeer, swarm: Swarm) -> None:
    await attacker.flood_graft(feed_topic(swarm.nodes[2].me), 100, prune_first=False)


MISBEHAVIOUR: dict[str, Callable[[HostilePeer, Swarm], Awaitable[None]]] = {
    "forged entries": _forged,
    "forged entries by sync": _forged_by_sync,
    "out-of-chain entries": _unlinked,
    "iwant flood": _iwant_flood,
    "graft flood in backoff": _graft_in_backoff,
    "graft flood": _graft_again,
}


@pytest.mark.trio
@pytest.mark.parametrize("attack", MISBEHAVIOUR)
async def test_protocol_misbehaviour_is_scored_until_the_attacker_is_cut_off(attack: str) -> None:
    async with _attacked() as (swarm, target, departures):
        async with hostile_peer(target) as attacker:
            await MISBEHAVIOUR[attack](attacker, swarm)
            assert await attacker.wait_closed(DEADLINE)
        assert "score" in (await departures.reasons_of(attacker.identity))[0]
        # Of the thousands of IWANTs for one entry, only max_iwant_per_id a
        # heartbeat are answered, and the attacker is gone within a few.
        assert attacker.received["entry"] < 100
        await _serves_honest_peers(swarm)
        _only_honest_sessions(target)
        followed = swarm.nodes[2].me
        assert target.store.latest_seq(followed) == 2  # its two genuine posts
        assert target.store.latest_seq(attacker.identity) <= 1  # seq 1 was genuine


@pytest.mark.trio
@pytest.mark.parametrize("attack", ["forged entries", "out-of-chain entries"])
async def test_an_attacker_cut_off_for_invalid_entries_is_refused_when_it_comes_back(
    attack: str,
) -> None:
    key = Ed25519PrivateKey.generate()
    async with _attacked() as (swarm, target, departures):
        async with hostile_peer(target, identity=key) as attacker:
            await MISBEHAVIOUR[attack](attacker, swarm)
            assert await attacker.wait_closed(DEADLINE)
        async with hostile_peer(target, identity=key) as again:
            assert await again.wait_closed(DEADLINE)
        assert again.first_misbehaviour is None  # refused before it did anything
        assert "came back" in (await departures.reasons_of(again.identity, 2))[1]
        assert again.received["sub"] == 0  # told nothing
        _only_honest_sessions(target)


@pytest.mark.trio
async def test_a_peer_that_asks_for_much_and_reads_nothing_is_cut_off() -> None:
    # The node answers each sync request with a batch; unread, they would
    # pile up (a thousand batches) until the byte bound of the send queue.
    async with _attacked() as (swarm, target, departures):
        for n in range(300):  # more than one batch (MAX_RANGE entries)
            await target.post(f"post {n} " + "x" * 200)
        async with hostile_peer(target, read=False) as attacker:
            await attacker.flood_want(target.me, 1000)
            reasons = await departures.reasons_of(attacker.identity)
        assert "send queue full" in reasons[0]
        await _serves_honest_peers(swarm)
        _only_honest_sessions(target)


# --- handshakes that stall, and crowds of connections ------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize("stall", ["slow loris", "first message only", "nothing at all"])
async def test_a_handshake_that_never_ends_is_dropped(stall: str) -> None:
    async with _attacked() as (swarm, target, _):
        async with hostile_peer(target, handshake=False) as attacker:
            if stall == "slow loris":
                # A byte every 20 ms: more than the whole handshake takes,
                # in far less time than the deadline.
                assert await attacker.slow_loris(0.02, limit=DEADLINE) > 2
            elif stall == "first message only":
                await attacker.stall_handshake()
            assert await attacker.wait_closed(DEADLINE)
        await _serves_honest_peers(swarm)
        _only_honest_sessions(target)


@pytest.mark.trio
async def test_stalled_handshakes_past_the_bound_make_way_for_new_ones() -> None:
    # With a timeout far beyond the deadline, only the bound can drop them.
    options = replace(OPTIONS, handshake_timeout=3600.0)
    async with _attacked(options) as (swarm, target, _):
        count = 5 * options.max_handshakes
        async with connection_flood(target, count) as flood:
            await flood.wait_opened()
            assert flood.opened == count
            assert await flood.wait_closed(count - options.max_handshakes, DEADLINE)
            # All that are left are stalled handshakes: a newcomer still gets in.
            newcomer = await swarm.add()  # it dials node 0, its seed
            await swarm.wait_for_peer(0, newcomer.me, timeout=DEADLINE)
            assert await flood.wait_closed(count - options.max_handshakes + 1, DEADLINE)
        await _serves_honest_peers(swarm)
        assert len(target.peers()) == HONEST_PEERS + 1


@pytest.mark.trio
async def test_a_thousand_connections_in_the_handshake_leave_the_node_serving() -> None:
    async with _attacked() as (swarm, target, _):
        count = 1000
        async with connection_flood(target, count) as flood:
            await flood.wait_opened()
            assert flood.opened + flood.failed == count
            await _serves_honest_peers(swarm)
            assert await flood.wait_closed(flood.opened - OPTIONS.max_handshakes, DEADLINE)
        _only_honest_sessions(target)


@pytest.mark.trio
async def test_handshakes_past_the_rate_are_turned_away_before_any_cryptography() -> None:
    # Hardly a token comes back within the test: the burst is all there is.
    options = replace(OPTIONS, handshake_rate=0.001)
    burst = options.max_handshakes
    async with _attacked(options) as (swarm, target, _):
        count = 5 * burst
        async with connection_flood(target, count, handshake=True, concurrency=2) as flood:
            await flood.wait_opened()
            # The honest nodes took two tokens when they joined.
            assert flood.handshakes <= burst - HONEST_PEERS
            assert await flood.wait_closed(count - flood.handshakes, DEADLINE)
            await _serves_honest_peers(swarm)


@pytest.mark.trio
async def test_sessions_that_dialled_the_node_are_bounded() -> None:
    async with _attacked(replace(OPTIONS, handshake_rate=1e6)) as (swarm, target, _):
        count = 100
        admitted = OPTIONS.max_inbound - HONEST_PEERS
        # Fewer at once than the bound on handshakes: none is dropped in it.
        flood_of_sybils = connection_flood(target, count, handshake=True, concurrency=4)
        async with flood_of_sybils as flood:
            await flood.wait_opened()
            assert await flood.wait_closed(count - admitted, DEADLINE)
            assert flood.handshakes == count  # refused after the handshake, not before
            assert len(target.peers()) == OPTIONS.max_inbound
            await _serves_honest_peers(swarm)
            # The node still dials out when its inbound sessions are full.
            newcomer = await swarm.add()
            assert await target.dial(*newcomer.listen_address)
        await swarm.wait_for_peer(0, newcomer.me, timeout=DEADLINE)
