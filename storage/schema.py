"""The store's SQLite schema and its migrations.

Tables with NOT NULL columns outside their key are ordinary rowid tables:
SQLite 3.40's ``quick_check`` reports false NULLs for such columns in
WITHOUT ROWID tables, and ``torv verify`` relies on that check.

``PRAGMA user_version`` holds the schema version. Each migration takes the
database from version ``n - 1`` to ``n`` inside one transaction; a store
written by a newer torv (a higher version than :data:`SCHEMA_VERSION`) is
refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from .errors import StorageError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_V1: Final = """
CREATE TABLE entries (
    rowid     INTEGER PRIMARY KEY,
    id        BLOB    NOT NULL UNIQUE,
    author    BLOB    NOT NULL,
    seq       INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    ts        INTEGER NOT NULL,  -- the author's timestamp, ms since the epoch
    sort_ts   INTEGER NOT NULL,  -- min(ts, received): a future date cannot pin the top
    received  INTEGER NOT NULL,
    header    BLOB    NOT NULL,  -- the exact bytes received
    signature BLOB    NOT NULL,
    payload   BLOB,              -- NULL when deleted or never received
    deleted   INTEGER NOT NULL DEFAULT 0,
    shown     INTEGER NOT NULL,  -- 1: a post or repost with its payload
    root      BLOB,              -- replies: the thread's first post
    parent    BLOB,
    target    BLOB               -- repost, react, delete: an entry; follow, block: a feed
);
CREATE INDEX entries_by_author_seq ON entries (author, seq);
CREATE INDEX entries_by_time ON entries (sort_ts) WHERE shown = 1;
CREATE INDEX entries_by_author_time ON entries (author, sort_ts) WHERE shown = 1;
CREATE INDEX entries_by_root ON entries (root, ts) WHERE root IS NOT NULL;
CREATE INDEX entries_by_target ON entries (target) WHERE target IS NOT NULL;

CREATE TABLE mentions (
    feed    BLOB    NOT NULL,
    sort_ts INTEGER NOT NULL,
    entry   INTEGER NOT NULL,  -- entries.rowid
    PRIMARY KEY (feed, sort_ts, entry)
) WITHOUT ROWID;

CREATE TABLE tags (
    tag     TEXT    NOT NULL,
    sort_ts INTEGER NOT NULL,
    entry   INTEGER NOT NULL,  -- entries.rowid
    PRIMARY KEY (tag, sort_ts, entry)
) WITHOUT ROWID;

CREATE TABLE feeds (
    author        BLOB    PRIMARY KEY,
    latest_seq    INTEGER NOT NULL,
    latest_id     BLOB    NOT NULL,
    last_shown_ts INTEGER,  -- an upper bound on sort_ts of the feed's shown entries
    forked        INTEGER NOT NULL DEFAULT 0,
    name          TEXT,
    bio           TEXT,
    profile_seq   INTEGER
);

CREATE TABLE relations (
    author    BLOB    NOT NULL,
    target    BLOB    NOT NULL,
    following INTEGER NOT NULL DEFAULT 0,
    follow_seq INTEGER NOT NULL DEFAULT 0,
    blocking  INTEGER NOT NULL DEFAULT 0,
    block_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (author, target)
);
CREATE INDEX relations_by_target ON relations (target, author);

CREATE TABLE forks (
    author BLOB    NOT NULL,
    seq    INTEGER NOT NULL,
    first  BLOB    NOT NULL,  -- the entry held before
    second BLOB    NOT NULL,  -- the conflicting entry
    PRIMARY KEY (author, seq, second)
);

CREATE TABLE deletions (
    target BLOB NOT NULL,  -- the entry whose payload is dropped
    author BLOB NOT NULL,  -- who asked; only the target's own author counts
    by     BLOB NOT NULL,  -- the delete entry
    -- Keyed by both: a request by someone else must not take the place of
    -- the author's own, which may arrive later.
    PRIMARY KEY (target, author)
);
"""

_V2: Final = """
CREATE TABLE peers (
    identity  BLOB    PRIMARY KEY,  -- the peer's Ed25519 identity
    addresses TEXT    NOT NULL,     -- HOST:PORT, space-separated, best first
    last_seen INTEGER NOT NULL,     -- ms since the epoch, last successful session
    failures  INTEGER NOT NULL DEFAULT 0  -- failed dials since then
);
CREATE INDEX peers_by_last_seen ON peers (last_seen);

CREATE TABLE dht_contacts (
    host      TEXT    NOT NULL,
    port      INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (host, port)
);
"""

# Replies to a person's posts (the app's mentions screen) are found through
# each post's replies; what the people one follows liked and reposted lately
# (the `popular` timeline) through each one's reactions by time.
_V3: Final = """
CREATE INDEX entries_by_parent ON entries (parent) WHERE parent IS NOT NULL;
CREATE INDEX entries_by_author_reaction ON entries (author, ts)
    WHERE kind IN ('react', 'repost');
"""

# Posts on the square from feeds whose logs are not held here: each one's
# signature is checked, its chain cannot be. Their rowids start at 2**62, so
# a timeline cursor (sort_ts, rowid) orders them with the entries' rows.
_V4: Final = """
CREATE TABLE square (
    rowid     INTEGER PRIMARY KEY,
    id        BLOB    NOT NULL UNIQUE,
    author    BLOB    NOT NULL,
    sort_ts   INTEGER NOT NULL,
    received  INTEGER NOT NULL,
    header    BLOB    NOT NULL,
    signature BLOB    NOT NULL,
    payload   BLOB    NOT NULL
);
CREATE INDEX square_by_time ON square (sort_ts);
CREATE INDEX square_by_author ON square (author);
"""

#: MIGRATIONS[n - 1] takes the schema from version n - 1 to n.
MIGRATIONS: Final[Sequence[str]] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    # sqlite3.complete_statement tokenizes like SQLite, so a ';' in a comment
    # does not end a statement.
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def migrate(db: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring ``db`` to the newest schema; return the version it had before.

    The connection must be in autocommit mode. Raises :class:`StorageError`
    if the database is newer than ``migrations`` or a migration fails.
    """
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > len(migrations):
        raise StorageError(
            f"the store has schema version {version}, newer than this torv knows "
            f"({len(migrations)}); upgrade torv to open it"
        )
    for target in range(version + 1, len(migrations) + 1):
        try:
            db.execute("BEGIN IMMEDIATE")
            for statement in _statements(migrations[target - 1]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StorageError(f"migrating the store to version {target} failed: {exc}") from exc
    return int(version)
