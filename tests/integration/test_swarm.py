"""Real nodes on loopback: posts reach followers, offline nodes catch up,
forged entries are refused, garbage does not stop a node."""

from __future__ import annotations

import contextlib
import logging
import random
import socket
from dataclasses import replace

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.channel import SecureStream, secure_handshake
from gossip.handshake import TorvHandshake
from gossip.wire import (
    Choke,
    EntryMessage,
    RawEntry,
    Subscribe,
    WireMessage,
    encode_message,
    feed_topic,
)
from node.runtime import Node, NodeOptions, PeerDown, SyncProgress
from node.testing import TEST_NETWORK_KEY, open_swarm
from storage import Post, create_entry


@pytest.mark.trio
async def test_a_post_reaches_every_follower() -> None:
    with trio.fail_after(60):
        async with open_swarm(4) as swarm:
            author = swarm.nodes[0]
            for follower in swarm.nodes[1:]:
                await follower.follow(author.me)
            entry = await author.post("hello, square")
            for index in range(1, 4):
                await swarm.wait_for_entry(index, entry.id, timeout=20)


@pytest.mark.trio
async def test_a_node_offline_during_posts_catches_up_on_reconnect() -> None:
    with trio.fail_after(90):
        async with open_swarm(2) as swarm:
            author = swarm.nodes[0]
            await swarm.nodes[1].follow(author.me)
            first = await author.post("before")
            await swarm.wait_for_entry(1, first.id, timeout=20)
            await swarm.stop(1)
            # More than one sync range (256 entries) while the follower is away.
            for n in range(300):
                last = await author.post(f"while you were away {n}")
            follower = await swarm.start(
                1, replace(swarm.options, bootstrap=(author.listen_address,))
            )
            # Subscribed right after the start, before the first batch can arrive.
            progress: list[int] = []
            async with follower.events() as events:
                async for event in events:
                    if isinstance(event, SyncProgress) and event.feed == author.me:
                        progress.append(event.have)
                        if event.have >= last.seq:
                            break
            assert progress == sorted(progress)
            assert len(progress) >= 2  # more than one batch
            await swarm.wait_for_seq(1, author.me, last.seq, timeout=60)
            timeline = await follower.timeline(limit=5)
            assert timeline[0].entry.id == last.id
            assert (await follower._db(follower.store.verify_all)).entries >= 302


@pytest.mark.trio
async def test_a_restarted_node_with_no_seed_rejoins_from_its_address_book() -> None:
    with trio.fail_after(60):
        async with open_swarm(2) as swarm:
            seed = swarm.nodes[0]
            await swarm.wait_for_peer(1, seed.me, timeout=20)
            await swarm.stop(1)
            await swarm.start(1)  # no bootstrap at all
            await swarm.wait_for_peer(1, seed.me, timeout=30)


@pytest.mark.trio
async def test_a_new_follower_finds_other_followers_while_the_author_is_offline() -> None:
    # Node 0 is a seed that replicates nothing; followers find each other only
    # through the provider records they announce when they follow.
    options = replace(NodeOptions(), maintain_interval=1.0)
    with trio.fail_after(90):
        async with open_swarm(4, options=options) as swarm:
            author = swarm.nodes[1]
            entry = await author.post("for whoever follows me")
            await swarm.nodes[2].follow(author.me)
            await swarm.wait_for_entry(2, entry.id, timeout=30)
            await swarm.stop(1)
            await swarm.nodes[3].follow(author.me)
            await swarm.wait_for_entry(3, entry.id, timeout=60)


async def _attacker(target_address: tuple[str, int]) -> tuple[SecureStream, bytes]:
    key = Ed25519PrivateKey.generate()
    stream = await trio.open_tcp_stream(*target_address)
    handshake = TorvHandshake(initiator=True, identity=key, network_key=TEST_NETWORK_KEY)
    return await secure_handshake(stream, handshake), key.public_key().public_bytes_raw()


@pytest.mark.trio
async def test_forged_entries_are_refused_and_their_sender_dropped() -> None:
    with trio.fail_after(60):
        async with open_swarm(2) as swarm:
            target, honest = swarm.nodes
            victim = Ed25519PrivateKey.generate()
            victim_feed = victim.public_key().public_bytes_raw()
            await target.follow(victim_feed)
            secure, attacker = await _attacker(target.listen_address)
            topic = feed_topic(victim_feed)
            reason = ""
            async with target.events() as events:
                await secure.send_all(encode_message(Subscribe((topic,))))
                for n in range(10):
                    real = create_entry(
                        victim, seq=1, prev=None, timestamp=n, payload=Post(text=f"x{n}")
                    )
                    forged = RawEntry(real.header_bytes, bytes(64), real.payload)
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await secure.send_all(encode_message(EntryMessage((topic,), forged)))
                async for event in events:
                    if isinstance(event, PeerDown) and event.identity == attacker:
                        reason = event.reason
                        break
            await trio.aclose_forcefully(secure)
            assert target.store.latest_seq(victim_feed) == 0
            assert "score" in reason
            # The node goes on serving honest peers.
            await honest.follow(target.me)
            entry = await target.post("still here")
            await swarm.wait_for_entry(1, entry.id, timeout=20)


@pytest.mark.trio
async def test_garbage_on_the_tcp_and_udp_ports_does_not_stop_a_node() -> None:
    with trio.fail_after(60):
        async with open_swarm(2) as swarm:
            target, honest = swarm.nodes
            rng = random.Random(7)
            for size in (0, 1, 2, 50, 5000):
                stream = await trio.open_tcp_stream(*target.listen_address)
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(rng.randbytes(size))
                await stream.aclose()
            udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with udp:
                for size in (0, 1, 30, 1000, 9000):
                    await udp.sendto(rng.randbytes(size), target.status().dht)
            await honest.follow(target.me)
            entry = await target.post("unbothered")
            await swarm.wait_for_entry(1, entry.id, timeout=20)
            assert target.status().peers


@pytest.mark.trio
async def test_nodes_dialling_each_other_at_once_keep_one_connection() -> None:
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            for _ in range(5):
                left, right = await swarm.add(), await swarm.add()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(left.dial, *right.listen_address)
                    nursery.start_soon(right.dial, *left.listen_address)
                # Both keep the connection the smaller identity dialled; the
                # other may show for a moment before it is closed.
                smaller = min(left.me, right.me)
                for node, other in ((left, right), (right, left)):
                    await _until_settled(node, other.me, outbound=node.me == smaller)
                assert [p.identity for p in left.peers()].count(right.me) == 1
                assert [p.identity for p in right.peers()].count(left.me) == 1


async def _until_settled(node: Node, peer: bytes, *, outbound: bool) -> None:
    """Wait (checking on each peer event) until ``node``'s one session with
    ``peer`` is the one in the given direction."""

    def settled() -> bool:
        sessions = [info for info in node.peers() if info.identity == peer]
        return len(sessions) == 1 and sessions[0].outbound == outbound

    with trio.fail_after(20):
        async with node.events() as events:
            while not settled():
                with trio.move_on_after(1.0):
                    await events.receive()


@pytest.mark.trio
async def test_a_message_the_router_should_not_have_made_is_logged_and_the_node_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(30):
        async with open_swarm(2) as swarm:
            a, b = swarm.nodes
            await swarm.wait_for_peer(0, b.me, timeout=20)
            bad = Choke(("square", "square"))  # a peer refuses repeated topics
            drained = a.router.drain

            def drain_with_bad() -> list[tuple[bytes, WireMessage]]:
                return [(b.me, bad), *drained()]

            monkeypatch.setattr(a.router, "drain", drain_with_bad)
            with caplog.at_level(logging.ERROR, logger="node.runtime"):
                a._flush()
            monkeypatch.undo()
            assert "choke message would be refused: topics repeat" in caplog.text
            # The node and its session go on.
            await b.follow(a.me)
            post = await a.post("still here")
            await swarm.wait_for_entry(1, post.id, timeout=20)
