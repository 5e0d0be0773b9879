"""The torv node: identity, data directory, the owner's API, and the CLI.

The public names a program (or the terminal app) may use are exported here,
including the error tree of :mod:`storage.errors`.
"""

from storage.errors import (
    AmbiguousId,
    BadExportFile,
    BadSignature,
    ChainError,
    ConfigError,
    CorruptStore,
    DiskFull,
    EntryError,
    IdentityError,
    InvalidArgument,
    LocalError,
    MalformedEntry,
    NotFound,
    ReadOnlyStore,
    RemoteError,
    StorageError,
    TorvError,
    UnsafePermissions,
)
from storage.payloads import MAX_BIO_CHARS, MAX_CW_CHARS, MAX_NAME_CHARS, MAX_TEXT_CHARS

from .home import Config, Home, default_data_dir
from .identity import KeyFile, feed_id_from_text, feed_id_to_text, short_feed_id
from .local import LocalNode, Thread, ThreadItem

__all__ = [
    "MAX_BIO_CHARS",
    "MAX_CW_CHARS",
    "MAX_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "AmbiguousId",
    "BadExportFile",
    "BadSignature",
    "ChainError",
    "Config",
    "ConfigError",
    "CorruptStore",
    "DiskFull",
    "EntryError",
    "Home",
    "IdentityError",
    "InvalidArgument",
    "KeyFile",
    "LocalError",
    "LocalNode",
    "MalformedEntry",
    "NotFound",
    "ReadOnlyStore",
    "RemoteError",
    "StorageError",
    "Thread",
    "ThreadItem",
    "TorvError",
    "UnsafePermissions",
    "default_data_dir",
    "feed_id_from_text",
    "feed_id_to_text",
    "short_feed_id",
]
