"""The Noise XX handshake, ``Noise_XX_25519_ChaChaPoly_SHA256``, without I/O.

Written from the Noise Protocol Framework specification (revision 34) on
``cryptography``'s X25519, ChaCha20-Poly1305, HMAC and SHA-256, and checked
against the published test vectors (``tests/gossip/test_noise.py``).

:class:`NoiseXX` takes handshake messages in and hands messages out; it never
touches a socket or a clock. After the third message both sides hold a
:class:`Transport`: one cipher state for each direction.

The XX pattern::

    -> e
    <- e, ee, s, es
    -> s, se
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from storage.errors import InvalidArgument, RemoteError

__all__ = [
    "MAX_NOISE_MESSAGE",
    "PROTOCOL_NAME",
    "TAG_SIZE",
    "CipherState",
    "HandshakeFailed",
    "NoiseXX",
    "Transport",
]

PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"
#: The largest Noise message, as the specification bounds it.
MAX_NOISE_MESSAGE: Final = 65535
TAG_SIZE: Final = 16
_DH_SIZE: Final = 32
_HASH_SIZE: Final = 32
_MAX_NONCE: Final = 2**64 - 1

#: The XX message patterns; message i is written by the initiator when i is even.
_PATTERN: Final = (("e",), ("e", "ee", "s", "es"), ("s", "se"))
#: (token, initiator?) -> (our key, their key) for each DH token.
_DH_KEYS: Final = {
    ("ee", True): ("e", "e"),
    ("ee", False): ("e", "e"),
    ("es", True): ("e", "s"),
    ("es", False): ("s", "e"),
    ("se", True): ("s", "e"),
    ("se", False): ("e", "s"),
}


class HandshakeFailed(RemoteError):
    """The peer's handshake message is malformed, or does not decrypt."""


def _hkdf2(chaining_key: bytes, key_material: bytes) -> tuple[bytes, bytes]:
    temp = hmac.digest(chaining_key, key_material, "sha256")
    first = hmac.digest(temp, b"\x01", "sha256")
    return first, hmac.digest(temp, first + b"\x02", "sha256")


class CipherState:
    """A ChaCha20-Poly1305 key and the nonce counter that goes with it."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self.nonce = 0

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def _next_nonce(self) -> bytes:
        if self.nonce >= _MAX_NONCE:
            raise HandshakeFailed("the cipher's nonces are used up; the connection must end")
        nonce = b"\x00\x00\x00\x00" + self.nonce.to_bytes(8, "little")
        self.nonce += 1
        return nonce

    def encrypt(self, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt (or, before a key is set, pass through) ``plaintext``."""
        if self._aead is None:
            return plaintext
        return self._aead.encrypt(self._next_nonce(), plaintext, ad)

    def decrypt(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt ``ciphertext``; raise :class:`HandshakeFailed` if it does not authenticate."""
        if self._aead is None:
            return ciphertext
        try:
            return self._aead.decrypt(self._next_nonce(), ciphertext, ad)
        except InvalidTag:
            raise HandshakeFailed("a message does not decrypt (wrong key, or altered)") from None


@dataclass(frozen=True, slots=True)
class Transport:
    """The two ciphers of an established session, and the handshake hash
    (a value both sides share that names this session)."""

    send: CipherState
    receive: CipherState
    handshake_hash: bytes


class _Symmetric:
    def __init__(self, prologue: bytes) -> None:
        # The protocol name is exactly 32 bytes, so it is h itself.
        self.h = PROTOCOL_NAME
        self.ck = PROTOCOL_NAME
        self.cipher = CipherState()
        self.mix_hash(prologue)

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, key_material: bytes) -> None:
        self.ck, key = _hkdf2(self.ck, key_material)
        self.cipher = CipherState(key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        first, second = _hkdf2(self.ck, b"")
        return CipherState(first), CipherState(second)


def _public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        # An all-zero result: the peer sent a point of small order.
        raise HandshakeFailed("the peer's key is not a usable X25519 key") from None


class NoiseXX:
    """One side of a Noise XX handshake.

    Call :meth:`write_message` when it is this side's turn (message 0 and 2
    for the initiator, 1 for the responder) and :meth:`read_message` with
    each message from the peer. After three messages :attr:`transport` is set
    and :attr:`remote_static` holds the peer's static key. An out-of-turn
    call is a :class:`InvalidArgument`; bad peer input is :class:`HandshakeFailed`.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static: X25519PrivateKey,
        prologue: bytes = b"",
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        self.initiator = initiator
        self._static = static
        self._ephemeral = ephemeral
        self._symmetric = _Symmetric(prologue)
        self._step = 0
        self._remote_ephemeral: bytes | None = None
        self.remote_static: bytes | None = None
        self.transport: Transport | None = None

    @property
    def my_turn(self) -> bool:
        """Whether the next message is ours to write (False once done)."""
        return self._step < len(_PATTERN) and (self._step % 2 == 0) == self.initiator

    @property
    def done(self) -> bool:
        return self.transport is not None

    def _dh_token(self, token: str) -> bytes:
        # Which of our keys meets which of theirs, by token and role.
        ours, theirs = _DH_KEYS[token, self.initiator]
        private = self._ephemeral if ours == "e" else self._static
        public = self._remote_ephemeral if theirs == "e" else self.remote_static
        assert private is not None
        assert public is not None
        return _dh(private, public)

    def write_message(self, payload: bytes = b"") -> bytes:
        """The next handshake message, carrying ``payload`` (encrypted once a key exists)."""
        if not self.my_turn:
            raise InvalidArgument("it is not this side's turn to write a handshake message")
        symmetric = self._symmetric
        out = bytearray()
        for token in _PATTERN[self._step]:
            if token == "e":
                if self._ephemeral is None:
                    self._ephemeral = X25519PrivateKey.generate()
                public = _public(self._ephemeral)
                out += public
                symmetric.mix_hash(public)
            elif token == "s":
                out += symmetric.encrypt_and_hash(_public(self._static))
            else:
                symmetric.mix_key(self._dh_token(token))
        out += symmetric.encrypt_and_hash(payload)
        if len(out) > MAX_NOISE_MESSAGE:
            raise InvalidArgument("the handshake payload is too large")
        self._advance()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message and return its payload."""
        if self.my_turn or self.done:
            raise InvalidArgument("no handshake message is expected from the peer now")
        if len(message) > MAX_NOISE_MESSAGE:
            raise HandshakeFailed("the handshake message is too large")
        symmetric = self._symmetric
        rest = memoryview(message)
        for token in _PATTERN[self._step]:
            if token == "e":
                if len(rest) < _DH_SIZE:
                    raise HandshakeFailed("the handshake message is truncated")
                self._remote_ephemeral = bytes(rest[:_DH_SIZE])
                rest = rest[_DH_SIZE:]
                symmetric.mix_hash(self._remote_ephemeral)
            elif token == "s":
                size = _DH_SIZE + (TAG_SIZE if symmetric.cipher.has_key else 0)
                if len(rest) < size:
                    raise HandshakeFailed("the handshake message is truncated")
                self.remote_static = symmetric.decrypt_and_hash(bytes(rest[:size]))
                rest = rest[size:]
            else:
                symmetric.mix_key(self._dh_token(token))
        if symmetric.cipher.has_key and len(rest) < TAG_SIZE:
            raise HandshakeFailed("the handshake message is truncated")
        payload = symmetric.decrypt_and_hash(bytes(rest))
        self._advance()
        return payload

    def _advance(self) -> None:
        self._step += 1
        if self._step == len(_PATTERN):
            first, second = self._symmetric.split()
            send, receive = (first, second) if self.initiator else (second, first)
            self.transport = Transport(send, receive, self._symmetric.h)
