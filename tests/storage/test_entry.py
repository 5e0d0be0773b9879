"""Entries: signed headers, payloads kept apart, and a decoder that never lets
a changed byte through."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import canonical
from storage.entry import (
    MAX_HEADER_SIZE,
    MAX_SEQ,
    MAX_TIMESTAMP,
    SIGNATURE_DOMAIN,
    VERSION,
    Entry,
    Header,
    _decode_header,
    _decode_header_in_full,
    create_entry,
    decode_entry_untrusted,
    entry_id,
    parse_entry_untrusted,
)
from storage.errors import (
    BadSignature,
    EntryError,
    InvalidArgument,
    MalformedEntry,
    RemoteError,
)
from storage.payloads import (
    MAX_PAYLOAD_SIZE,
    Delete,
    Follow,
    Payload,
    Post,
    Profile,
    React,
    UnknownPayload,
    encode_payload,
)

from .helpers import header_fields, make_key, post_bytes, public, raw_header, sign

# RFC 8032, section 7.1, TEST 1.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_EMPTY_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

KEY = make_key(1)
OTHER = make_key(2)


def first_entry(payload: Payload | None = None, key: Ed25519PrivateKey = KEY) -> Entry:
    return create_entry(key, seq=1, prev=None, timestamp=1_000, payload=payload or Post("hi"))


def decode(entry: Entry) -> Entry:
    return decode_entry_untrusted(entry.header_bytes, entry.signature, entry.payload)


def signed(fields: list[object], payload: bytes, key: Ed25519PrivateKey = KEY) -> Entry:
    """Decode a correctly signed header built from raw ``fields``."""
    header = raw_header(fields)
    return decode_entry_untrusted(header, sign(key, header), payload)


# --- the key and signature scheme ------------------------------------------------


def test_published_ed25519_vector_holds() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert public(key) == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_EMPTY_SIG


def test_entry_signature_covers_domain_and_header() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    entry = first_entry(key=key)
    assert entry.author == RFC8032_PUBLIC
    Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC).verify(
        entry.signature, SIGNATURE_DOMAIN + entry.header_bytes
    )
    # The same signature over the bare header (no domain) is another message.
    assert key.sign(entry.header_bytes) != entry.signature


def test_header_bytes_are_the_documented_array() -> None:
    payload = encode_payload(Post("hi"))
    entry = first_entry()
    assert canonical.unpack_untrusted(entry.header_bytes, max_size=256, what="h") == [
        VERSION,
        public(KEY),
        1,
        None,
        1_000,
        "post",
        hashlib.sha256(payload).digest(),
        len(payload),
    ]
    assert entry.payload == payload


def test_entry_id_is_sha256_of_header_and_signature() -> None:
    entry = first_entry()
    expected = hashlib.sha256(entry.header_bytes + entry.signature).digest()
    assert entry.id == expected
    assert entry_id(entry.header_bytes, entry.signature) == expected
    assert decode(entry).id == expected


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        Post("hi"),
        Post("reply", root=b"r" * 32, parent=b"p" * 32, tags=("t",), mentions=(b"m" * 32,)),
        React(entry=b"e" * 32, author=b"a" * 32, emoji="+"),
        Follow(feed=b"f" * 32),
        Profile(name="n"),
        Delete(entry=b"d" * 32),
        UnknownPayload(kind="future-kind_2", fields={"x": [1]}),
    ],
    ids=repr,
)
def test_create_then_decode_round_trips(payload: Payload) -> None:
    entry = create_entry(KEY, seq=7, prev=b"\x01" * 32, timestamp=123, payload=payload)
    decoded = decode(entry)
    assert decoded == entry
    assert decoded.content == payload
    assert (decoded.author, decoded.seq, decoded.kind) == (public(KEY), 7, payload.kind)
    assert decoded.header.prev == b"\x01" * 32


def test_a_header_without_its_payload_decodes_and_verifies() -> None:
    entry = first_entry()
    decoded = decode_entry_untrusted(entry.header_bytes, entry.signature, None)
    assert decoded.payload is None
    assert decoded.content is None
    assert decoded.id == entry.id
    assert decoded == entry.without_payload()


def test_limits_are_accepted_at_the_edge() -> None:
    entry = create_entry(
        KEY, seq=MAX_SEQ, prev=b"\x00" * 32, timestamp=MAX_TIMESTAMP, payload=Post("x")
    )
    assert decode(entry) == entry
    assert len(entry.header_bytes) <= MAX_HEADER_SIZE


# --- create_entry refuses what peers would reject -------------------------------------


@pytest.mark.parametrize(
    ("seq", "prev", "timestamp"),
    [
        (0, None, 0),
        (-1, None, 0),
        (MAX_SEQ + 1, b"\x00" * 32, 0),
        (1, b"\x00" * 32, 0),  # seq 1 has no prev
        (2, None, 0),  # every later seq has one
        (2, b"\x00" * 31, 0),
        (1, None, -1),
        (1, None, MAX_TIMESTAMP + 1),
        (True, None, 0),  # a bool is not an int on the wire
        (1, None, True),
        (1, None, 1.0),
    ],
    ids=repr,
)
def test_create_entry_refuses_bad_headers(seq: object, prev: object, timestamp: object) -> None:
    with pytest.raises(InvalidArgument):
        create_entry(KEY, seq=seq, prev=prev, timestamp=timestamp, payload=Post("x"))  # type: ignore[arg-type]


def test_create_entry_refuses_bad_payloads_and_kinds() -> None:
    with pytest.raises(InvalidArgument):
        create_entry(KEY, seq=1, prev=None, timestamp=0, payload=Post(""))
    with pytest.raises(InvalidArgument, match="kind"):
        create_entry(
            KEY, seq=1, prev=None, timestamp=0, payload=UnknownPayload(kind="Bad Kind", fields={})
        )


# --- rejections, each with its class and problem code --------------------------------


def test_wrong_signature_length() -> None:
    entry = first_entry()
    for signature in (entry.signature[:-1], entry.signature + b"\x00", b""):
        with pytest.raises(MalformedEntry) as info:
            decode_entry_untrusted(entry.header_bytes, signature, entry.payload)
        assert info.value.problem == "bad-signature"


def test_signature_of_another_key() -> None:
    entry = first_entry()
    with pytest.raises(BadSignature) as info:
        decode_entry_untrusted(entry.header_bytes, sign(OTHER, entry.header_bytes), entry.payload)
    assert info.value.problem == "bad-signature"
    assert isinstance(info.value, RemoteError)


def test_signature_without_the_domain_prefix() -> None:
    entry = first_entry()
    with pytest.raises(BadSignature):
        decode_entry_untrusted(entry.header_bytes, KEY.sign(entry.header_bytes), entry.payload)


def test_parse_does_not_check_the_signature_but_verify_does() -> None:
    entry = first_entry()
    forged = parse_entry_untrusted(entry.header_bytes, b"\x00" * 64, entry.payload)
    with pytest.raises(BadSignature):
        forged.verify()


IDENTITY_POINT = b"\x01" + b"\x00" * 31  # y = 1: the neutral element, order 1
ORDER_TWO_POINT = (2**255 - 19 - 1).to_bytes(32, "little")  # y = -1: order 2


@pytest.mark.parametrize(
    "author",
    [IDENTITY_POINT, ORDER_TWO_POINT, b"\xff" * 32],
    ids=["identity", "order-2", "not-canonical"],
)
def test_author_that_is_not_a_usable_key(author: bytes) -> None:
    payload = post_bytes()
    fields = header_fields(KEY, payload)
    fields[1] = author
    header = raw_header(fields)
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, sign(KEY, header), payload)
    assert info.value.problem == "bad-header"


def test_the_universal_signature_of_the_identity_key_is_refused() -> None:
    # Under the identity point, R = identity and S = 0 satisfy [S]B = R + [k]A
    # for every message; OpenSSL accepts it, so the header check must not.
    payload = post_bytes()
    fields = header_fields(KEY, payload)
    fields[1] = IDENTITY_POINT
    header = raw_header(fields)
    universal = IDENTITY_POINT + b"\x00" * 32
    Ed25519PublicKey.from_public_bytes(IDENTITY_POINT).verify(universal, SIGNATURE_DOMAIN + header)
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, universal, payload)
    assert info.value.problem == "bad-header"


def test_payload_hash_mismatch() -> None:
    entry = first_entry(Post("abc"))
    other = encode_payload(Post("abd"))
    assert len(other) == len(entry.payload or b"")
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(entry.header_bytes, entry.signature, other)
    assert info.value.problem == "payload-mismatch"


def test_payload_size_mismatch() -> None:
    payload = post_bytes()
    fields = header_fields(KEY, payload)
    fields[7] = len(payload) + 1  # the hash is right, the size is not
    with pytest.raises(MalformedEntry) as info:
        signed(fields, payload)
    assert info.value.problem == "payload-mismatch"


def test_signed_payload_that_breaks_the_kind_rules() -> None:
    payload = canonical.packb({"text": ""})
    with pytest.raises(MalformedEntry) as info:
        signed(header_fields(KEY, payload), payload)
    assert info.value.problem == "bad-payload"


def test_signed_payload_of_another_kind() -> None:
    payload = post_bytes()
    with pytest.raises(MalformedEntry) as info:
        signed(header_fields(KEY, payload, kind="follow"), payload)
    assert info.value.problem == "bad-payload"


@pytest.mark.parametrize("version", [0, 2, 255, -1, True, "1", None, b"\x01"], ids=repr)
def test_unknown_version(version: object) -> None:
    payload = post_bytes()
    with pytest.raises(MalformedEntry) as info:
        signed(header_fields(KEY, payload, version=version), payload)
    assert info.value.problem == "unknown-version"


def test_unknown_version_is_reported_before_the_field_count() -> None:
    # A future version may have another layout; it is named as a version problem.
    header = raw_header([2, "anything"])
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, sign(KEY, header), None)
    assert info.value.problem == "unknown-version"


@pytest.mark.parametrize(
    "change",
    [
        {"seq": True},
        {"seq": False},
        {"timestamp": True},
        {"seq": "1"},
        {"seq": 0},
        {"seq": MAX_SEQ + 1},
        {"timestamp": -1},
        {"timestamp": MAX_TIMESTAMP + 1},
        {"seq": 1, "prev": b"\x00" * 32},  # seq 1 with a prev
        {"seq": 2, "prev": None},  # seq 2 without one
        {"seq": 2, "prev": b"\x00" * 31},
        {"seq": 2, "prev": "x" * 32},
        {"kind": ""},
        {"kind": "Post"},
        {"kind": "1post"},
        {"kind": "p" * 33},
        {"kind": "post\n"},
        {"kind": b"post"},
    ],
    ids=repr,
)
def test_bad_header_fields(change: dict[str, object]) -> None:
    payload = post_bytes()
    with pytest.raises(MalformedEntry) as info:
        signed(header_fields(KEY, payload, **change), payload)
    assert info.value.problem == "bad-header"


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (1, b"\x01" * 31),  # author
        (1, "a" * 32),
        (6, b"\x00" * 31),  # payload hash
        (6, None),
        (7, True),  # payload size
        (7, -1),
        (7, 0),  # every payload is a map: at least one byte
        (7, MAX_PAYLOAD_SIZE + 1),
    ],
    ids=repr,
)
def test_bad_header_field_at(index: int, value: object) -> None:
    payload = post_bytes()
    fields = header_fields(KEY, payload)
    fields[index] = value
    header = raw_header(fields)
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, b"\x00" * 64, None)
    assert info.value.problem == "bad-header"


@pytest.mark.parametrize("value", [[], {}, "header", 1, [VERSION] * 7, [VERSION] * 9], ids=repr)
def test_header_that_is_not_an_eight_field_array(value: object) -> None:
    header = raw_header(value)
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, sign(KEY, header), None)
    assert info.value.problem == "bad-header"


def test_oversize_header_is_rejected_before_decoding() -> None:
    payload = post_bytes()
    fields = header_fields(KEY, payload)
    fields[1] = b"\x01" * MAX_HEADER_SIZE
    header = raw_header(fields)
    assert len(header) > MAX_HEADER_SIZE
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, sign(KEY, header), payload)
    assert info.value.problem == "oversize"


def test_non_canonical_header() -> None:
    entry = first_entry()
    # The timestamp 1000 is a uint16 (0xcd 0x03 0xe8); write it as a uint32.
    header = entry.header_bytes.replace(b"\xcd\x03\xe8", b"\xce\x00\x00\x03\xe8")
    assert header != entry.header_bytes
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, sign(KEY, header), entry.payload)
    assert info.value.problem == "non-canonical"


def test_header_claiming_an_oversize_payload_is_rejected() -> None:
    payload = b"\xc0" * (MAX_PAYLOAD_SIZE + 1)
    fields = header_fields(KEY, payload)
    fields[7] = len(payload)
    header = raw_header(fields)
    with pytest.raises(MalformedEntry) as info:
        decode_entry_untrusted(header, sign(KEY, header), payload)
    assert info.value.problem == "bad-header"


def test_every_entry_error_is_a_remote_error() -> None:
    entry = first_entry()
    with pytest.raises(RemoteError):
        decode_entry_untrusted(entry.header_bytes[:-1], entry.signature, entry.payload)


# --- any changed byte is caught ----------------------------------------------------


ENTRIES = [
    first_entry(Post("short")),
    create_entry(
        KEY,
        seq=3,
        prev=bytes(range(32)),
        timestamp=1_700_000_000_000,
        payload=Post("a reply #x", root=b"r" * 32, parent=b"p" * 32, tags=("x",), cw="cw"),
    ),
    create_entry(OTHER, seq=2, prev=b"\xff" * 32, timestamp=5, payload=Profile(name="n", bio="b")),
]


@settings(max_examples=1000)
@given(st.sampled_from(ENTRIES), st.data())
def test_any_single_byte_change_is_rejected(entry: Entry, data: st.DataObject) -> None:
    assert entry.payload is not None
    parts = [bytearray(entry.header_bytes), bytearray(entry.signature), bytearray(entry.payload)]
    part = data.draw(st.sampled_from(parts))
    position = data.draw(st.integers(0, len(part) - 1))
    old = part[position]
    part[position] = data.draw(st.integers(0, 255).filter(lambda b: b != old))
    with pytest.raises(EntryError):
        decode_entry_untrusted(bytes(parts[0]), bytes(parts[1]), bytes(parts[2]))


@pytest.mark.parametrize("entry", ENTRIES, ids=["post", "reply", "profile"])
def test_every_bit_flip_is_rejected(entry: Entry) -> None:
    # Exhaustive over positions (one flip per bit), complementing the random values above.
    assert entry.payload is not None
    blob = entry.header_bytes + entry.signature + entry.payload
    cut1, cut2 = len(entry.header_bytes), len(entry.header_bytes) + len(entry.signature)
    for position in range(len(blob)):
        for bit in range(8):
            changed = bytearray(blob)
            changed[position] ^= 1 << bit
            with pytest.raises(EntryError):
                decode_entry_untrusted(
                    bytes(changed[:cut1]), bytes(changed[cut1:cut2]), bytes(changed[cut2:])
                )


@given(st.binary(max_size=120), st.binary(max_size=70), st.none() | st.binary(max_size=40))
def test_arbitrary_bytes_raise_only_entry_errors(
    header: bytes, signature: bytes, payload: bytes | None
) -> None:
    try:
        decode_entry_untrusted(header, signature, payload)
    except (MalformedEntry, BadSignature):
        return
    pytest.fail("random bytes decoded as a signed entry")


# --- the header's fast path agrees with the full decoder ------------------------


def _outcome(decode_header: Callable[[bytes], Header], data: bytes) -> object:
    try:
        return decode_header(data)
    except MalformedEntry as exc:
        return (exc.problem, str(exc))


@settings(max_examples=500)
@given(st.sampled_from(ENTRIES), st.data())
def test_header_fast_path_decides_as_the_full_decoder(entry: Entry, data: st.DataObject) -> None:
    # The common case skips the canonical tree walk (the exact field types
    # make it redundant); every header, valid or not, must get the same
    # result, or the same error, as the full path.
    header = bytearray(entry.header_bytes)
    for _ in range(data.draw(st.integers(0, 3))):
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        position = data.draw(st.integers(0, max(0, len(header) - 1)))
        if action == "set" and header:
            header[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            header[position:position] = data.draw(st.binary(min_size=1, max_size=9))
        elif header:
            del header[position]
    blob = bytes(header)
    assert _outcome(_decode_header, blob) == _outcome(_decode_header_in_full, blob)


@pytest.mark.parametrize(
    "fields",
    [
        [VERSION, b"a" * 32, 1, None, 5, "post", b"h" * 32, 3],  # a weak author key
        [VERSION, public(KEY), 1, None, 5.0, "post", b"h" * 32, 3],  # a float
        [VERSION, public(KEY), True, None, 5, "post", b"h" * 32, 3],  # a boolean seq
        [VERSION, public(KEY), 1, None, 5, "Post", b"h" * 32, 3],  # a bad kind
        [2, public(KEY), 1, None, 5, "post", b"h" * 32, 3],  # another version
        [VERSION, public(KEY), 1, None, 5, "post", b"h" * 32],  # seven fields
    ],
)
def test_header_fast_path_leaves_bad_headers_to_the_full_decoder(fields: list[object]) -> None:
    data = msgpack.packb(fields, use_bin_type=True)
    with pytest.raises(MalformedEntry) as fast:
        _decode_header(data)
    with pytest.raises(MalformedEntry) as full:
        _decode_header_in_full(data)
    assert (fast.value.problem, str(fast.value)) == (full.value.problem, str(full.value))
