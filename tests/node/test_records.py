"""Signed DHT records: what a DHT node stores and a lookup trusts."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from node import records
from node.records import (
    MAX_PROVIDERS,
    MAX_VALUE_SIZE,
    BadRecord,
    Record,
    address_key,
    decode_record_untrusted,
    decode_value_untrusted,
    dht_node_id,
    encode_provider_set,
    merge_provider_sets,
    newer_address,
    parse_address,
    provider_key,
    sign_record,
)
from storage import InvalidArgument, canonical

NOW = 1_800_000_000.0
FEED = bytes(range(32))


def key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


def ident(n: int) -> bytes:
    return key(n).public_key().public_bytes_raw()


def address(n: int, seq: int = 1, expires: float = NOW + 3600) -> bytes:
    return sign_record(key(n), addresses=("127.0.0.1:4000",), seq=seq, expires=int(expires))


def provider(n: int, seq: int = 1, expires: float = NOW + 3600, addrs: int = 1) -> bytes:
    addresses = tuple(f"10.0.{i}.{n}:4{i:03d}" for i in range(addrs))
    return sign_record(key(n), addresses=addresses, seq=seq, expires=int(expires), feed=FEED)


def test_an_address_record_checks_out_under_its_key() -> None:
    (record,) = decode_value_untrusted(address_key(ident(1)), address(1), NOW)
    assert record.identity == ident(1)
    assert record.addresses == ("127.0.0.1:4000",)
    assert record.kind == "addr"


def test_a_record_under_someone_elses_key_is_refused() -> None:
    with pytest.raises(BadRecord, match="not for this key"):
        decode_value_untrusted(address_key(ident(2)), address(1), NOW)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"seq": 2}, "signature"),
        ({"addrs": ["127.0.0.1:4001"]}, "signature"),
        ({"expires": int(NOW) - 1}, "expired"),
        ({"expires": int(NOW) + 10 * 24 * 3600}, "too long"),
        ({"addrs": ["example.org:80"]}, "IP address"),
        ({"extra": 1}, "exactly its fields"),
        ({"id": bytes([1]) + bytes(31)}, "usable key"),
        ({"seq": True}, "wrong type"),
    ],
)
def test_a_changed_or_bad_record_is_refused(change: dict[str, object], problem: str) -> None:
    value = canonical.unpack_untrusted(address(1), max_size=512, what="record")
    value.update(change)
    with pytest.raises(BadRecord, match=problem):
        decode_record_untrusted(canonical.packb(value), NOW)


@given(st.binary(max_size=600))
def test_arbitrary_values_are_refused_or_valid(data: bytes) -> None:
    for dht_key in (address_key(ident(1)), provider_key(FEED), b"other"):
        with contextlib.suppress(BadRecord):
            decode_value_untrusted(dht_key, data, NOW)


def test_the_newest_address_wins() -> None:
    (old,) = decode_value_untrusted(address_key(ident(1)), address(1, seq=5), NOW)
    (new,) = decode_value_untrusted(address_key(ident(1)), address(1, seq=6), NOW)
    assert newer_address(None, old)
    assert newer_address(old, new)
    assert not newer_address(new, old)
    assert not newer_address(new, new)


def _providers(*records: bytes) -> list[Record]:
    value = encode_provider_set([decode_record_untrusted(record, NOW) for record in records])
    return decode_value_untrusted(provider_key(FEED), value, NOW)


def test_provider_sets_merge_newest_per_provider_and_drop_expired() -> None:
    held = _providers(provider(1, seq=1), provider(2, seq=1))
    incoming = _providers(provider(1, seq=2), provider(3, seq=1))
    merged = merge_provider_sets(held, incoming, NOW)
    assert {(r.identity, r.seq) for r in merged} == {(ident(1), 2), (ident(2), 1), (ident(3), 1)}
    later = merge_provider_sets(merged, [], NOW + 7200)
    assert later == []


def test_a_provider_set_stays_within_its_count_and_size() -> None:
    records = [decode_record_untrusted(provider(n, addrs=8), NOW) for n in range(1, 40)]
    merged = merge_provider_sets([], records, NOW)
    assert 1 <= len(merged) <= MAX_PROVIDERS
    value = encode_provider_set(merged)
    assert len(value) <= MAX_VALUE_SIZE
    assert decode_value_untrusted(provider_key(FEED), value, NOW) == merged


def test_a_provider_set_with_a_provider_twice_is_refused() -> None:
    record = decode_record_untrusted(provider(1), NOW)
    with pytest.raises(BadRecord, match="twice"):
        decode_value_untrusted(provider_key(FEED), encode_provider_set([record, record]), NOW)


def test_addresses_and_node_ids() -> None:
    assert parse_address("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert parse_address("[::1]:9") == ("::1", 9)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "host:80", ":80"):
        with pytest.raises(InvalidArgument):
            parse_address(bad)
    assert len(dht_node_id(ident(1))) == 20
    assert dht_node_id(ident(1)) != dht_node_id(ident(2))


def test_a_longer_life_or_a_later_seq_buys_no_place_in_a_full_provider_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 honest providers refreshed lately; 40 Sybils claiming the longest
    # life allowed and huge seqs fare no better than if they claimed neither.
    honest = [decode_record_untrusted(provider(n, expires=NOW + 3000), NOW) for n in range(1, 21)]

    def sybils(seq: int, expires: float) -> list[Record]:
        return [
            decode_record_untrusted(provider(n, seq=seq, expires=expires), NOW)
            for n in range(100, 140)
        ]

    def kept(salt: bytes, others: list[Record]) -> set[bytes]:
        monkeypatch.setattr(records, "_RANK_SALT", salt)
        merged = merge_provider_sets(honest, others, NOW)
        assert len(merged) == 20
        return {r.identity for r in merged}

    for salt in (b"a" * 16, b"b" * 16):
        assert kept(salt, sybils(2**40, NOW + 7000)) == kept(salt, sybils(1, NOW + 3000))
    # Each node picks its own share: the Sybils cannot aim at one order.
    assert kept(b"a" * 16, sybils(1, NOW + 3000)) != kept(b"b" * 16, sybils(1, NOW + 3000))


def test_stale_providers_make_way_for_fresh_ones() -> None:
    stale = [decode_record_untrusted(provider(n, expires=NOW + 600), NOW) for n in range(1, 21)]
    fresh = [decode_record_untrusted(provider(n, expires=NOW + 3600), NOW) for n in range(21, 41)]
    merged = merge_provider_sets(stale, fresh, NOW)
    assert {r.identity for r in merged} == {r.identity for r in fresh}
