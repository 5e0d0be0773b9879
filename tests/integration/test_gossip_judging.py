"""Gossip into a real node from a scripted peer on loopback: entries that
arrive together are judged in one round, each with its own verdict."""

from __future__ import annotations

import hashlib

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.channel import secure_handshake
from gossip.handshake import TorvHandshake
from gossip.wire import (
    EntryMessage,
    MessageBuffer,
    RawEntry,
    Want,
    decode_message_untrusted,
    encode_message,
    feed_topic,
)
from node.runtime import EntryAdded
from node.testing import TEST_NETWORK_KEY, open_swarm
from storage import Entry, Post, create_entry

AUTHOR = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"judging-author").digest())
FEED = AUTHOR.public_key().public_bytes_raw()
OTHER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"judging-other").digest())


def _log(key: Ed25519PrivateKey, count: int) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, count + 1):
        prev = entries[-1].id if entries else None
        entries.append(
            create_entry(key, seq=seq, prev=prev, timestamp=seq, payload=Post(f"n{seq}"))
        )
    return entries


def _raw(entry: Entry) -> RawEntry:
    return RawEntry(entry.header_bytes, entry.signature, entry.payload)


@pytest.mark.trio
async def test_entries_read_together_are_stored_in_log_order_and_judged_one_by_one() -> None:
    # Newest first: judged one at a time, each would be ahead of a gap
    # until seq 1 came. Among them a forged entry and one filed under a
    # topic that is not its own: both refused, the others stored.
    log = _log(AUTHOR, 12)
    chain, next_one = log[:10], log[10]
    forged = RawEntry(next_one.header_bytes, bytes(64), next_one.payload)
    misfiled = _log(OTHER, 1)[0]
    topic = feed_topic(FEED)
    messages = [EntryMessage((topic,), _raw(entry)) for entry in reversed(chain)]
    messages[4:4] = [
        EntryMessage((topic,), forged),
        EntryMessage((topic,), _raw(misfiled)),
    ]
    data = b"".join(encode_message(message) for message in messages)
    assert len(data) < 60_000  # one encrypted frame: the node reads it in one go
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            node = swarm.nodes[0]
            await node.follow(FEED)
            stream = await trio.open_tcp_stream(*node.listen_address)
            key = Ed25519PrivateKey.generate()
            handshake = TorvHandshake(initiator=True, identity=key, network_key=TEST_NETWORK_KEY)
            secure = await secure_handshake(stream, handshake)
            added: list[EntryAdded] = []
            async with node.events() as events:
                await secure.send_all(data)
                with trio.move_on_after(20):
                    async for event in events:
                        if isinstance(event, EntryAdded):
                            added.append(event)
                            if len(added) == len(chain):
                                break
            await trio.aclose_forcefully(secure)
            assert sorted(event.seq for event in added) == list(range(1, 11))
            assert {event.source for event in added} == {key.public_key().public_bytes_raw()}
            assert node.store.latest_seq(FEED) == 10
            assert node.store.find(next_one.id) is None
            assert node.store.latest_seq(misfiled.author) == 0


@pytest.mark.trio
async def test_entries_held_ahead_of_a_gap_are_stored_when_gossip_fills_it() -> None:
    # The scripted peer never answers the node's sync requests: only gossip
    # can fill the gap, and the held entries must follow at once.
    log = _log(AUTHOR, 5)
    topic = feed_topic(FEED)
    ahead = b"".join(encode_message(EntryMessage((topic,), _raw(entry))) for entry in log[1:])
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            node = swarm.nodes[0]
            await node.follow(FEED)
            stream = await trio.open_tcp_stream(*node.listen_address)
            key = Ed25519PrivateKey.generate()
            handshake = TorvHandshake(initiator=True, identity=key, network_key=TEST_NETWORK_KEY)
            secure = await secure_handshake(stream, handshake)
            await secure.send_all(ahead)
            # The node asks for the gap (seq 1) once it holds 2 to 5.
            buffer = MessageBuffer()
            asked = False
            while not asked:
                buffer.feed(await secure.receive_some())
                while (body := buffer.next_body()) is not None:
                    message = decode_message_untrusted(body)
                    asked = asked or (isinstance(message, Want) and message.feed == FEED)
            assert node.store.latest_seq(FEED) == 0
            async with node.events() as events:
                await secure.send_all(encode_message(EntryMessage((topic,), _raw(log[0]))))
                async for event in events:
                    if isinstance(event, EntryAdded) and event.seq == 5:
                        break
            await trio.aclose_forcefully(secure)
            assert node.store.latest_seq(FEED) == 5
