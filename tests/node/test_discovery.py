"""The DHT island with real UDP on loopback: records found, garbage survived,
forged stores refused, contacts per IP capped."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest
import trio
import umsgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.discovery import Discovery, merge_values, open_discovery
from node.records import (
    address_key,
    decode_record_untrusted,
    decode_value_for_digest_untrusted,
    encode_provider_set,
    key_digest,
    provider_key,
    sign_record,
)

FEED = bytes(range(32))


def _key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


@contextlib.asynccontextmanager
async def swarm(count: int, **options: object) -> AsyncIterator[list[Discovery]]:
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(open_discovery(_key(n + 1), **options))  # type: ignore[arg-type]
            for n in range(count)
        ]
        for node in nodes[1:]:
            assert await node.bootstrap([nodes[0].address]) >= 1
        yield nodes


@pytest.mark.trio
async def test_an_announced_address_and_providers_are_found_elsewhere() -> None:
    with trio.fail_after(60):
        async with swarm(8, max_contacts_per_ip=None) as nodes:
            assert await nodes[3].announce(["127.0.0.1:7003"])
            found = await nodes[7].find_peer(nodes[3].identity)
            assert found is not None
            assert found.addresses == ("127.0.0.1:7003",)
            assert found.identity == nodes[3].identity
            assert await nodes[2].announce_provider(FEED, ["127.0.0.1:7002"])
            assert await nodes[5].announce_provider(FEED, ["127.0.0.1:7005"])
            providers = await nodes[6].find_providers(FEED)
            assert {record.identity for record in providers} == {
                nodes[2].identity,
                nodes[5].identity,
            }
            assert await nodes[6].find_peer(_key(99).public_key().public_bytes_raw()) is None


def _request(name: str, args: list[object]) -> bytes:
    return b"\x00" + bytes(20) + umsgpack.packb([name, args])


@pytest.mark.trio
async def test_garbage_datagrams_and_forged_stores_do_not_stop_a_node() -> None:
    with trio.fail_after(60):
        async with swarm(3, max_contacts_per_ip=None) as nodes:
            target = nodes[0]
            attacker = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with attacker:
                forged = umsgpack.packb({"id": bytes(32), "kind": "addr"})
                for datagram in [
                    b"",
                    b"\x00" * 10,
                    b"\xff" * 9000,
                    b"\x00" + bytes(20) + b"\xc1\xc1",
                    _request("store", [bytes(20), key_digest(address_key(bytes(32))), forged]),
                    _request("store", ["not-an-id", 5, None]),
                    _request("find_node", [bytes(20)]),
                    _request("set_everything", [1, 2, 3]),
                    b"\x01" + bytes(20) + umsgpack.packb([1, 2]),
                ]:
                    await attacker.sendto(datagram, target.address)
            # The node goes on serving: a record is still stored and found.
            assert await nodes[1].announce(["127.0.0.1:7101"])
            found = await nodes[2].find_peer(nodes[1].identity)
            assert found is not None
            counters = (await target.stats()).counters
            assert counters["dropped: bad size"] == 3
            assert counters["dropped: malformed request"] == 3
            assert counters["refused: store"] == 1
            assert sum(n for name, n in counters.items() if name.startswith("dropped: ")) == 7
            # Only the real record is held, never the forged one.
            assert (await target.stats()).stored_keys <= 1


@pytest.mark.trio
async def test_contacts_from_one_ip_are_capped() -> None:
    with trio.fail_after(60):
        async with swarm(6, max_contacts_per_ip=2) as nodes:
            assert len(await nodes[0].contacts()) <= 2
            assert (await nodes[0].stats()).counters.get("refused: contacts per ip", 0) >= 1


def _address_record(owner: int, port: int, seq: int) -> bytes:
    return sign_record(
        _key(owner), addresses=(f"127.0.0.1:{port}",), seq=seq, expires=int(time.time()) + 600
    )


def test_merged_values_keep_the_newest_address_and_drop_bad_ones() -> None:
    identity = _key(3).public_key().public_bytes_raw()
    digest = key_digest(address_key(identity))
    old, new = _address_record(3, 7000, 1), _address_record(3, 7001, 2)
    other = _address_record(4, 7002, 9)  # valid, but for another key
    merged = merge_values(digest, [old, b"\xc1garbage", new, other, old, 17], time.time())
    assert merged == new
    assert merge_values(digest, [b"", other, None], time.time()) is None


def test_merged_provider_sets_unite_the_providers() -> None:
    digest = key_digest(provider_key(FEED))
    now = int(time.time())
    sets = [
        encode_provider_set(
            [
                decode_record_untrusted(
                    sign_record(
                        _key(n),
                        addresses=(f"127.0.0.1:{7000 + n}",),
                        seq=1,
                        expires=now + 600,
                        feed=FEED,
                    ),
                    now,
                )
            ]
        )
        for n in (1, 2, 3)
    ]
    merged = merge_values(digest, [sets[0], sets[1], sets[1], sets[2]], now)
    assert merged is not None
    records = decode_value_for_digest_untrusted(digest, merged, now)
    assert {record.identity for record in records} == {
        _key(n).public_key().public_bytes_raw() for n in (1, 2, 3)
    }


@pytest.mark.trio
async def test_a_lookup_returns_the_newest_record_even_if_most_nodes_hold_an_older_one() -> None:
    with trio.fail_after(60):
        async with swarm(8, max_contacts_per_ip=None) as nodes:
            identity = _key(4).public_key().public_bytes_raw()
            digest = key_digest(address_key(identity))
            old, new = _address_record(4, 7000, 1), _address_record(4, 7001, 2)
            for node in nodes[:6]:
                assert node._server.storage.offer(digest, old)
            # Only one node has heard of the move: the stock lookup would
            # return the value most nodes hold.
            assert nodes[6]._server.storage.offer(digest, new)
            found = await nodes[0].find_peer(identity)
            assert found is not None
            assert found.addresses == ("127.0.0.1:7001",)
