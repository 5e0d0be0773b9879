"""Blocking in a running swarm: the feed is purged, its session ends and a new
one is refused, and its entries are not fetched again."""

from __future__ import annotations

import hashlib

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.channel import secure_handshake
from gossip.handshake import TorvHandshake
from gossip.wire import EntryMessage, RawEntry, encode_message, feed_topic
from node.runtime import EntryAdded, PeerDown
from node.testing import TEST_NETWORK_KEY, open_swarm
from storage import Entry, Post, create_entry

TROLL = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"moderation-troll").digest())
FRIEND = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"moderation-friend").digest())


def _first(key: Ed25519PrivateKey) -> Entry:
    return create_entry(key, seq=1, prev=None, timestamp=1, payload=Post("first"))


def _gossip(entry: Entry) -> bytes:
    raw = RawEntry(entry.header_bytes, entry.signature, entry.payload)
    return encode_message(EntryMessage((feed_topic(entry.author),), raw))


@pytest.mark.trio
async def test_a_block_purges_the_feed_and_refuses_its_connections() -> None:
    with trio.fail_after(60):
        async with open_swarm(3) as swarm:
            troll, me, friend = swarm.nodes
            await me.follow(troll.me)
            await me.follow(friend.me)
            await friend.follow(troll.me)
            nasty = await troll.post("something nasty")
            await swarm.wait_for_entry(1, nasty.id, timeout=20)
            await swarm.wait_for_peer(1, troll.me, timeout=20)

            async with me.events() as events:
                await me.block(troll.me)
                async for event in events:
                    if isinstance(event, PeerDown) and event.identity == troll.me:
                        break
            assert me.store.find(nasty.id) is None
            assert me.store.feed_info(troll.me) is None
            # The troll dials again: the handshake completes (it proves who it
            # is), and then the blocking node hangs up.
            async with troll.events() as events:
                await troll.dial(*me.listen_address)
                async for event in events:
                    if isinstance(event, PeerDown) and event.identity == me.me:
                        break
            assert all(info.identity != troll.me for info in me.peers())

            # The friend still holds and gossips the troll's feed; none of it
            # comes back to the node that blocked it.
            later = await troll.post("more of the same")
            await swarm.wait_for_entry(2, later.id, timeout=20)
            hello = await friend.post("hi")
            await swarm.wait_for_entry(1, hello.id, timeout=20)
            assert me.store.find(later.id) is None
            assert me.store.feed_info(troll.me) is None


@pytest.mark.trio
async def test_an_entry_judged_before_a_block_is_not_stored_after_its_purge() -> None:
    # The race: gossip judges an entry of a followed feed (it is in the
    # scope), the owner blocks that feed, the block's purge runs, and only
    # then does the judged entry reach the store. The store lock is held
    # here so that the three steps happen in that order.
    nasty, hello = _first(TROLL), _first(FRIEND)
    troll, friend = nasty.author, hello.author
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            node = swarm.nodes[0]
            await node.follow(troll)
            await node.follow(friend)
            stream = await trio.open_tcp_stream(*node.listen_address)
            handshake = TorvHandshake(
                initiator=True, identity=Ed25519PrivateKey.generate(), network_key=TEST_NETWORK_KEY
            )
            secure = await secure_handshake(stream, handshake)
            async with trio.open_nursery() as nursery, node.events() as events:
                async with node._db_lock:
                    nursery.start_soon(node.block, troll)
                    await trio.testing.wait_all_tasks_blocked()
                    # The block waits for the store; now the entry comes,
                    # is judged, and waits behind it.
                    await secure.send_all(_gossip(nasty))
                    await trio.testing.wait_all_tasks_blocked()
                    assert node._db_lock.statistics().tasks_waiting >= 2
                # Rounds are judged one after another: once the friend's
                # entry is stored, the troll's round is over.
                await secure.send_all(_gossip(hello))
                async for event in events:
                    if isinstance(event, EntryAdded) and event.entry_id == hello.id:
                        break
            await trio.aclose_forcefully(secure)
            assert troll in node.store.blocking(node.me)
            assert node.store.find(nasty.id) is None
            assert node.store.feed_info(troll) is None
