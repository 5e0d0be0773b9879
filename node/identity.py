"""Identities: Ed25519 key pairs, the text form of feed ids, and the key file.

Feed id text form (``docs/protocol.md``)::

    "torv1" + base32(key + checksum)      lower case, RFC 4648 alphabet, no padding
    checksum = SHA-256(b"torv-feed-id" + key)[:2]

60 characters in all. The checksum catches a mistyped or truncated id. The
short display form is ``@`` and the first 8 characters after ``torv1``.

The key file holds the 32-byte Ed25519 seed, in the clear or encrypted with a
key derived from a passphrase (scrypt, then ChaCha20-Poly1305 with the public
key as associated data). It is written with mode 0600 and never overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from storage.errors import IdentityError, InvalidArgument

from .files import check_private_mode

__all__ = [
    "FEED_ID_PREFIX",
    "KeyFile",
    "feed_id_from_text",
    "feed_id_to_text",
    "generate_key",
    "short_feed_id",
]

FEED_ID_PREFIX: Final = "torv1"
_CHECKSUM_DOMAIN: Final = b"torv-feed-id"
_FEED_TEXT_LENGTH: Final = len(FEED_ID_PREFIX) + 55
_KEY_FILE_MAX: Final = 4096
_KEY_FILE_VERSION: Final = 1
#: scrypt cost: about 0.1 s and 32 MiB on a laptop, per attempt.
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SCRYPT_MAX_MEMORY: Final = 256 * 1024 * 1024


def _checksum(key: bytes) -> bytes:
    return hashlib.sha256(_CHECKSUM_DOMAIN + key).digest()[:2]


def feed_id_to_text(key: bytes) -> str:
    """The text form of a 32-byte feed id (an Ed25519 public key)."""
    if len(key) != 32:
        raise InvalidArgument("a feed id is 32 bytes")
    body = base64.b32encode(key + _checksum(key)).decode("ascii").rstrip("=").lower()
    return FEED_ID_PREFIX + body


def feed_id_from_text(text: str) -> bytes:
    """Parse the text form of a feed id; raise :class:`InvalidArgument` if it is not one."""
    text = text.strip()
    if not text.startswith(FEED_ID_PREFIX) or len(text) != _FEED_TEXT_LENGTH:
        raise InvalidArgument(
            f"{text!r} is not a feed id (expected {FEED_ID_PREFIX} and 55 more characters)"
        )
    body = text[len(FEED_ID_PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise InvalidArgument(f"{text!r} is not a feed id: {exc}") from None
    key, checksum = raw[:32], raw[32:]
    # The last character also carries 3 padding bits; they must be zero, so
    # that a key has exactly one text form.
    if checksum != _checksum(key) or feed_id_to_text(key) != FEED_ID_PREFIX + body.lower():
        raise InvalidArgument(f"{text!r} is not a feed id: the checksum does not match (a typo?)")
    return key


def short_feed_id(key: bytes) -> str:
    """The short display form: ``@`` and 8 characters."""
    return "@" + feed_id_to_text(key)[len(FEED_ID_PREFIX) : len(FEED_ID_PREFIX) + 8]


def generate_key() -> Ed25519PrivateKey:
    """A new random identity key."""
    return Ed25519PrivateKey.generate()


@dataclass(frozen=True, slots=True)
class KeyFile:
    """The identity key file in a data directory.

    ``public`` can always be read; the secret key may need a passphrase.
    """

    path: Path
    public: bytes
    encrypted: bool
    _fields: dict[str, Any]

    @classmethod
    def create(
        cls, path: Path, key: Ed25519PrivateKey, *, passphrase: str | None = None
    ) -> KeyFile:
        """Write ``key`` to a new file at ``path`` (mode 0600), encrypted if a
        passphrase is given. Raises :class:`IdentityError` if the file exists."""
        public = key.public_key().public_bytes_raw()
        seed = key.private_bytes_raw()
        fields: dict[str, Any] = {
            "torv-secret-key": _KEY_FILE_VERSION,
            "public": feed_id_to_text(public),
        }
        if passphrase:
            salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
            box = ChaCha20Poly1305(_derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
            fields |= {
                "encryption": "scrypt-chacha20poly1305",
                "scrypt": {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
                "nonce": nonce.hex(),
                "secret": box.encrypt(nonce, seed, public).hex(),
            }
        else:
            fields |= {"encryption": "none", "secret": seed.hex()}
        data = (json.dumps(fields, indent=2) + "\n").encode()
        _write_new_private_file(path, data)
        return cls(path, public, bool(passphrase), fields)

    @classmethod
    def load(cls, path: Path) -> KeyFile:
        """Read the key file at ``path`` (without decrypting it).

        Raises :class:`IdentityError` if it is missing, too large, or
        malformed, and its subclass :class:`UnsafePermissions` if its mode
        gives anyone but the owner any access (group bits included).
        """
        try:
            with path.open("rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                data = f.read(_KEY_FILE_MAX + 1)
        except FileNotFoundError:
            raise IdentityError(
                f"no identity in {path.parent} (create one with `torv init`)"
            ) from None
        except OSError as exc:
            raise IdentityError(f"cannot read the key file {path}: {exc.strerror}") from None
        check_private_mode(
            path,
            mode,
            "the key file",
            fix="600",
            risk=(
                "Whoever copied it can post as you: if that may have happened, make a new identity"
                if mode & 0o044
                else ""
            ),
        )
        if len(data) > _KEY_FILE_MAX:
            raise IdentityError(f"{path} is too large to be a torv key file")
        try:
            fields = json.loads(data)
            if not isinstance(fields, dict) or fields.get("torv-secret-key") != _KEY_FILE_VERSION:
                raise ValueError("not a version 1 torv key file")
            public = feed_id_from_text(str(fields["public"]))
            encryption = fields["encryption"]
            if encryption not in ("none", "scrypt-chacha20poly1305"):
                raise ValueError(f"unknown encryption {encryption!r}")
        except (ValueError, KeyError, TypeError, InvalidArgument) as exc:
            raise IdentityError(f"{path} is not a valid key file: {exc}") from None
        return cls(path, public, encryption != "none", fields)

    def unlock(self, passphrase: str | None = None) -> Ed25519PrivateKey:
        """The secret key; ``passphrase`` is needed if the file is encrypted.

        Raises :class:`IdentityError` for a wrong or missing passphrase or a
        damaged file.
        """
        fields = self._fields
        try:
            if self.encrypted:
                if not passphrase:
                    raise IdentityError("the key file is encrypted: a passphrase is needed")
                kdf = fields["scrypt"]
                n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
                # scrypt takes 128 * n * r bytes: at most 256 MiB here.
                if not (
                    2 <= n <= 2**20
                    and n & (n - 1) == 0
                    and 1 <= r <= 32
                    and 1 <= p <= 16
                    and 128 * n * r <= _SCRYPT_MAX_MEMORY
                ):
                    raise ValueError("scrypt parameters out of range")
                box = ChaCha20Poly1305(_derive(passphrase, bytes.fromhex(kdf["salt"]), n, r, p))
                try:
                    seed = box.decrypt(
                        bytes.fromhex(fields["nonce"]),
                        bytes.fromhex(fields["secret"]),
                        self.public,
                    )
                except InvalidTag:
                    raise IdentityError("wrong passphrase for the key file") from None
            else:
                seed = bytes.fromhex(fields["secret"])
            key = Ed25519PrivateKey.from_private_bytes(seed)
        except (ValueError, KeyError, TypeError) as exc:
            raise IdentityError(f"{self.path} is damaged: {exc}") from None
        if key.public_key().public_bytes_raw() != self.public:
            raise IdentityError(
                f"{self.path} is damaged: the secret does not match the public key"
            )
        return key


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _write_new_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, durably, only if it does not exist."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            # The umask filters the mode given to open (0600 could become
            # 0400); fchmod sets exactly 0600 whatever the umask.
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise IdentityError(
                f"{path} already exists; torv never overwrites an identity"
            ) from None
    finally:
        temporary.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
