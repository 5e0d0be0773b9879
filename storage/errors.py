"""The one error tree of torv.

It lives in ``storage`` because imports flow one way (storage <- gossip <- node
<- ui) and every layer needs the root. ``node`` re-exports these names.

- :class:`RemoteError`: bytes that came from outside (a peer, an export file)
  are malformed or forged. The sender is at fault; the node goes on.
- :class:`LocalError`: the caller asked for something that cannot be done
  (unknown entry, wrong passphrase, bad argument).
- :class:`StorageError`: the local store is damaged or unusable.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousId",
    "BadExportFile",
    "BadSignature",
    "ChainError",
    "ConfigError",
    "CorruptStore",
    "DiskFull",
    "EntryError",
    "IdentityError",
    "InvalidArgument",
    "LocalError",
    "MalformedEntry",
    "NotFound",
    "ReadOnlyStore",
    "RemoteError",
    "StorageError",
    "TorvError",
    "UnsafePermissions",
]


class TorvError(Exception):
    """Root of every error torv raises on purpose."""


class RemoteError(TorvError):
    """Input from outside the node (a peer, a file) is malformed or forged."""


class EntryError(RemoteError):
    """An entry is invalid.

    ``problem`` is a short stable code naming what is wrong (for example
    ``"bad-signature"``, ``"wrong-prev"``, ``"gap"``, ``"non-canonical"``,
    ``"oversize"``, ``"unknown-version"``); the message says it for people.
    """

    problem: str = "invalid-entry"

    def __init__(self, message: str, *, problem: str | None = None) -> None:
        super().__init__(message)
        if problem is not None:
            self.problem = problem


class MalformedEntry(EntryError):
    """The bytes do not form a well-formed, canonical entry within the bounds."""

    problem = "malformed"


class BadSignature(EntryError):
    """The signature does not verify against the author's key and the header."""

    problem = "bad-signature"


class ChainError(EntryError):
    """The entry does not link to the author's log (wrong prev, or a gap)."""

    problem = "chain"


class BadExportFile(RemoteError):
    """An export file is truncated, tampered with, or not an export file."""


class LocalError(TorvError):
    """The caller asked for something that cannot be done."""


class InvalidArgument(LocalError):
    """An argument is out of range or malformed."""


class NotFound(LocalError):
    """The named entry, feed or file does not exist here."""


class AmbiguousId(LocalError):
    """An id prefix matches more than one entry."""


class IdentityError(LocalError):
    """No identity, an unreadable key file, or a wrong passphrase."""


class UnsafePermissions(IdentityError):
    """The key file or the data directory is open to other users; the message
    names the file and the ``chmod`` that fixes it."""


class ConfigError(LocalError):
    """The configuration file is malformed or holds an invalid value."""


class StorageError(TorvError):
    """The local store cannot be used (damaged, newer schema, disk error)."""


class CorruptStore(StorageError):
    """A stored entry no longer verifies."""


class DiskFull(StorageError):
    """The disk that holds the store is full. The write that failed left the
    store as it was; once there is room, writing works again."""


class ReadOnlyStore(StorageError):
    """The store or its data directory cannot be written (a read-only file
    system, a read-only file, or a directory this user may not write)."""
