"""Sync into a real node from a scripted peer on loopback: what the node
stores from a batch, and which events it emits for it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossip.channel import SecureStream, secure_handshake
from gossip.handshake import TorvHandshake
from gossip.wire import (
    EntryBatch,
    Heads,
    MessageBuffer,
    RawEntry,
    Want,
    WireMessage,
    decode_message_untrusted,
    encode_message,
)
from node.runtime import EntryAdded, Node, SyncProgress
from node.testing import TEST_NETWORK_KEY, open_swarm
from storage import Entry, Post, create_entry

AUTHOR = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"sync-ingest-author").digest())
FEED = AUTHOR.public_key().public_bytes_raw()


def signed_log(count: int) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, count + 1):
        prev = entries[-1].id if entries else None
        entries.append(
            create_entry(AUTHOR, seq=seq, prev=prev, timestamp=seq, payload=Post(f"n{seq}"))
        )
    return entries


def raw(entry: Entry) -> RawEntry:
    return RawEntry(entry.header_bytes, entry.signature, entry.payload)


@dataclass
class ScriptedPeer:
    """The other end of a session with a node, driven by the test."""

    secure: SecureStream
    buffer: MessageBuffer = field(default_factory=MessageBuffer)

    @classmethod
    async def connect(cls, node: Node) -> ScriptedPeer:
        stream = await trio.open_tcp_stream(*node.listen_address)
        handshake = TorvHandshake(
            initiator=True, identity=Ed25519PrivateKey.generate(), network_key=TEST_NETWORK_KEY
        )
        return cls(await secure_handshake(stream, handshake))

    async def send(self, message: WireMessage) -> None:
        await self.secure.send_all(encode_message(message))

    async def want(self) -> Want:
        """The next ``want`` the node sends (other messages are skipped)."""
        while True:
            while (body := self.buffer.next_body()) is not None:
                message = decode_message_untrusted(body)
                if isinstance(message, Want):
                    return message
            self.buffer.feed(await self.secure.receive_some(65536))


async def sync_once(
    node: Node, batch: list[RawEntry], *, held_meanwhile: Sequence[Entry] = ()
) -> list[int]:
    """Offer FEED up to the last of ``batch``, answer the node's request with
    ``batch``, wait for its progress report; the seqs of FEED it announced."""
    await node.follow(FEED)
    peer = await ScriptedPeer.connect(node)
    added: list[int] = []
    async with node.events() as events:
        await peer.send(Heads(((FEED, len(batch)),)))
        want = await peer.want()
        assert (want.feed, want.first, want.last) == (FEED, 1, len(batch))
        if held_meanwhile:
            # Gossip, or another peer, was faster: the node holds these now.
            await node._db(node.store.ingest, held_meanwhile)
        await peer.send(EntryBatch(want.request, tuple(batch), True))
        async for event in events:
            if isinstance(event, EntryAdded) and event.author == FEED:
                added.append(event.seq)
            if isinstance(event, SyncProgress) and event.feed == FEED:
                break
    await trio.aclose_forcefully(peer.secure)
    return added


@pytest.mark.trio
async def test_entries_the_node_held_already_are_not_announced_again() -> None:
    log = signed_log(10)
    with trio.fail_after(30):
        async with open_swarm(1) as swarm:
            node = swarm.nodes[0]
            added = await sync_once(node, [raw(e) for e in log], held_meanwhile=log[:4])
            assert added == [5, 6, 7, 8, 9, 10]
            assert node.store.latest_seq(FEED) == 10


@pytest.mark.trio
async def test_a_malformed_entry_ends_the_batch_and_the_node_goes_on() -> None:
    log = signed_log(10)
    batch = [raw(e) for e in log]
    batch[6] = RawEntry(log[6].header_bytes, log[6].signature, b"\x81\xa1x\xa1y")
    with trio.fail_after(30):
        async with open_swarm(1) as swarm:
            node = swarm.nodes[0]
            added = await sync_once(node, batch)
            assert added == [1, 2, 3, 4, 5, 6]
            assert node.store.latest_seq(FEED) == 6
            assert (await node.post("still here")).seq >= 1
