"""The torv handshake without I/O: identities proven, networks kept apart."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gossip.handshake import (
    STATIC_KEY_DOMAIN,
    HandshakeFailed,
    TorvHandshake,
    _check_identity_payload_untrusted,
)
from storage import InvalidArgument, canonical

NETWORK = bytes(range(32))
OTHER_NETWORK = bytes(range(1, 33))


def _identity(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def run(dialer: TorvHandshake, listener: TorvHandshake) -> list[bytes]:
    """Exchange messages until both are done or one raises; return the messages."""
    sent: list[bytes] = []
    sides = (dialer, listener)
    turn = 0
    while dialer.session is None or listener.session is None:
        message = sides[turn].next_message()
        assert message is not None
        sent.append(message)
        sides[1 - turn].receive(message)
        turn = 1 - turn
    return sent


def test_both_sides_learn_each_others_identity_and_share_keys() -> None:
    alice, bob = _identity(1), _identity(2)
    dialer = TorvHandshake(initiator=True, identity=alice, network_key=NETWORK)
    listener = TorvHandshake(initiator=False, identity=bob, network_key=NETWORK)
    messages = run(dialer, listener)
    assert len(messages) == 3
    assert dialer.session is not None
    assert listener.session is not None
    assert dialer.session.remote_identity == _public(bob)
    assert listener.session.remote_identity == _public(alice)
    hello = dialer.session.transport.send.encrypt(b"", b"hello")
    assert listener.session.transport.receive.decrypt(b"", hello) == b"hello"
    # No identity crosses the wire in the clear.
    for message in messages:
        assert _public(alice) not in message
        assert _public(bob) not in message


def test_the_transcript_is_pinned_for_fixed_keys() -> None:
    def side(initiator: bool, n: int) -> TorvHandshake:
        return TorvHandshake(
            initiator=initiator,
            identity=_identity(n),
            network_key=NETWORK,
            static=X25519PrivateKey.from_private_bytes(bytes([n + 10]) * 32),
            ephemeral=X25519PrivateKey.from_private_bytes(bytes([n + 20]) * 32),
        )

    dialer, listener = side(True, 1), side(False, 2)
    messages = run(dialer, listener)
    assert dialer.session is not None
    transcript = [message.hex() for message in messages]
    assert [len(message) for message in messages] == [32, 32 + 48 + 117 + 16, 48 + 117 + 16]
    assert (
        transcript[0]
        == X25519PrivateKey.from_private_bytes(bytes([21]) * 32)
        .public_key()
        .public_bytes_raw()
        .hex()
    )
    assert dialer.session.transport.handshake_hash.hex() == PINNED_HASH


# Ed25519 and the Noise steps are deterministic, so fixed keys give fixed
# bytes, and the handshake hash mixes in every message; a change to the
# handshake's format changes this value. (The identity payload is 117 bytes:
# a map of "identity" bin 32, "sig" bin 64 and "v" 1.)
PINNED_HASH = "16e4aa38f187e75482ebe7d856473328f14cfb6f2cb82a16c7546217cb9153fa"


def test_a_different_network_key_fails() -> None:
    dialer = TorvHandshake(initiator=True, identity=_identity(1), network_key=NETWORK)
    listener = TorvHandshake(initiator=False, identity=_identity(2), network_key=OTHER_NETWORK)
    with pytest.raises(HandshakeFailed, match="decrypt"):
        run(dialer, listener)


def test_dialling_an_expected_identity_that_answers_as_another_fails() -> None:
    dialer = TorvHandshake(
        initiator=True, identity=_identity(1), network_key=NETWORK, expected=_public(_identity(3))
    )
    listener = TorvHandshake(initiator=False, identity=_identity(2), network_key=NETWORK)
    with pytest.raises(HandshakeFailed, match="dialled"):
        run(dialer, listener)


class _Forger(TorvHandshake):
    """A responder whose identity payload signs some other static key."""

    def __init__(self, identity: Ed25519PrivateKey, payload: bytes) -> None:
        super().__init__(initiator=False, identity=identity, network_key=NETWORK)
        self._payload = payload


@pytest.mark.parametrize(
    "payload",
    [
        canonical.packb(
            {
                "identity": _public(_identity(2)),
                "sig": _identity(2).sign(STATIC_KEY_DOMAIN + bytes(32)),
                "v": 1,
            }
        ),
        canonical.packb({"identity": _public(_identity(2)), "sig": bytes(64), "v": 1}),
        canonical.packb({"identity": bytes([1]) + bytes(31), "sig": bytes(64), "v": 1}),
        canonical.packb({"identity": _public(_identity(2)), "v": 1}),
        b"\xc1",
        b"",
    ],
    ids=["signs-another-key", "zero-signature", "weak-key", "no-signature", "garbage", "empty"],
)
def test_a_bad_identity_payload_fails(payload: bytes) -> None:
    dialer = TorvHandshake(initiator=True, identity=_identity(1), network_key=NETWORK)
    with pytest.raises(HandshakeFailed):
        run(dialer, _Forger(_identity(2), payload))


def test_caller_errors() -> None:
    with pytest.raises(InvalidArgument):
        TorvHandshake(initiator=True, identity=_identity(1), network_key=b"short")
    with pytest.raises(InvalidArgument):
        TorvHandshake(
            initiator=False, identity=_identity(1), network_key=NETWORK, expected=bytes(32)
        )


@pytest.mark.parametrize("version", [True, 2, "1"])
def test_an_identity_payload_of_another_version_fails_even_when_signed(version: object) -> None:
    static = bytes(range(32))
    identity = _identity(2)
    signed = {"identity": _public(identity), "sig": identity.sign(STATIC_KEY_DOMAIN + static)}
    assert _check_identity_payload_untrusted(canonical.packb({**signed, "v": 1}), static)
    with pytest.raises(HandshakeFailed, match="v: 1"):
        _check_identity_payload_untrusted(canonical.packb({**signed, "v": version}), static)
