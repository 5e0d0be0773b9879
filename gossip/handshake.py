"""The torv handshake: Noise XX bound to torv identities, without I/O.

Noise authenticates X25519 static keys; torv identities are Ed25519 keys. As
in libp2p's Noise handshake, each side sends, encrypted inside the handshake,
a payload with its identity key and a signature by that identity over its
Noise static key. The responder sends its payload in message 2, the
initiator in message 3, so neither identity crosses the wire in the clear.

The 32-byte network key is the Noise prologue: nodes of different networks
(a test network and the real one) fail at message 2 and never mix.

Payload (canonical msgpack map)::

    {"identity": bin 32, "sig": bin 64, "v": 1}
    sig = Ed25519(identity, b"torv-noise-static-key:" + noise static public key)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from storage import canonical
from storage.errors import InvalidArgument, MalformedEntry
from storage.weakkeys import is_weak_public_key

from .noise import HandshakeFailed, NoiseXX, Transport

__all__ = [
    "MAX_HANDSHAKE_MESSAGE",
    "NETWORK_KEY_SIZE",
    "STATIC_KEY_DOMAIN",
    "HandshakeFailed",
    "Session",
    "TorvHandshake",
]

NETWORK_KEY_SIZE: Final = 32
STATIC_KEY_DOMAIN: Final = b"torv-noise-static-key:"
_PAYLOAD_VERSION: Final = 1
_MAX_PAYLOAD: Final = 256
#: The longest handshake message a peer may send (Noise XX message 2: an
#: ephemeral key, the encrypted static key and the encrypted identity
#: payload, each encrypted part with its 16-byte tag); a frame announcing
#: more is refused before it is read.
MAX_HANDSHAKE_MESSAGE: Final = 32 + (32 + 16) + (_MAX_PAYLOAD + 16)


@dataclass(frozen=True, slots=True)
class Session:
    """An established session: who the peer is, and the ciphers to talk to it."""

    remote_identity: bytes
    transport: Transport


def _identity_payload(identity: Ed25519PrivateKey, static: X25519PrivateKey) -> bytes:
    static_public = static.public_key().public_bytes_raw()
    return canonical.packb(
        {
            "identity": identity.public_key().public_bytes_raw(),
            "sig": identity.sign(STATIC_KEY_DOMAIN + static_public),
            "v": _PAYLOAD_VERSION,
        }
    )


def _check_identity_payload_untrusted(payload: bytes, remote_static: bytes) -> bytes:
    """The identity in the peer's payload, if it signed the peer's static key."""
    try:
        value = canonical.unpack_untrusted(payload, max_size=_MAX_PAYLOAD, what="identity payload")
    except MalformedEntry as exc:
        raise HandshakeFailed(f"the peer's identity payload is malformed: {exc}") from None
    if (
        not isinstance(value, dict)
        or type(value.get("v")) is not int  # true == 1 in Python; not on the wire
        or value["v"] != _PAYLOAD_VERSION
        or not isinstance(value.get("identity"), bytes)
        or not isinstance(value.get("sig"), bytes)
        or len(value["identity"]) != 32
        or len(value["sig"]) != 64
    ):
        raise HandshakeFailed("the peer's identity payload is not {identity, sig, v: 1}")
    identity: bytes = value["identity"]
    if is_weak_public_key(identity):
        raise HandshakeFailed("the peer's identity is not a usable Ed25519 key")
    try:
        Ed25519PublicKey.from_public_bytes(identity).verify(
            value["sig"], STATIC_KEY_DOMAIN + remote_static
        )
    except (InvalidSignature, ValueError):
        raise HandshakeFailed("the peer's identity did not sign its Noise key") from None
    return identity


class TorvHandshake:
    """One side of the torv handshake, driven by messages in and out.

    ``expected`` (initiators only) is the identity the caller meant to reach;
    a different peer fails the handshake. :meth:`next_message` returns the
    message to send when it is this side's turn (else ``None``);
    :meth:`receive` takes the peer's message. :attr:`session` is set when done.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Ed25519PrivateKey,
        network_key: bytes,
        expected: bytes | None = None,
        static: X25519PrivateKey | None = None,
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        if len(network_key) != NETWORK_KEY_SIZE:
            raise InvalidArgument(f"a network key is {NETWORK_KEY_SIZE} bytes")
        if expected is not None and not initiator:
            raise InvalidArgument("only the side that dials knows whom it expects")
        static = static or X25519PrivateKey.generate()
        self._noise = NoiseXX(
            initiator=initiator, static=static, prologue=network_key, ephemeral=ephemeral
        )
        self._payload = _identity_payload(identity, static)
        self._expected = expected
        self._remote_identity: bytes | None = None
        self.session: Session | None = None

    def next_message(self) -> bytes | None:
        """The next message to send, or ``None`` if it is the peer's turn or done."""
        if not self._noise.my_turn:
            return None
        # Message 1 is in the clear: it carries no payload.
        payload = (
            b"" if self._noise.initiator and self._noise.remote_static is None else self._payload
        )
        message = self._noise.write_message(payload)
        self._finish()
        return message

    def receive(self, message: bytes) -> None:
        """Process the peer's message; raise :class:`HandshakeFailed` if it is bad."""
        payload = self._noise.read_message(message)
        if self._noise.remote_static is not None and self._remote_identity is None:
            identity = _check_identity_payload_untrusted(payload, self._noise.remote_static)
            if self._expected is not None and identity != self._expected:
                raise HandshakeFailed("the peer is not the identity that was dialled")
            self._remote_identity = identity
        elif payload:
            raise HandshakeFailed("the first handshake message must carry no payload")
        self._finish()

    def _finish(self) -> None:
        transport = self._noise.transport
        if transport is not None and self._remote_identity is not None:
            self.session = Session(self._remote_identity, transport)
