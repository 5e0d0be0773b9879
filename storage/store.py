"""The SQLite store of log entries.

One file per node, in WAL mode. The owner's own entries are committed with
``synchronous=FULL``: once :meth:`Store.append` returned, the entry survives
a crash or a power cut, so a seq is never used twice. Everything else
(entries from peers, the square, the address book) is committed with
``synchronous=NORMAL``: it survives the process crashing, and a power cut
may lose the last commits, which peers provide again; the fsync of the next
own entry makes them durable too. A commit without the fsync takes a tenth
of the time, small enough for the node to store a gossip round without a
worker thread. Headers, signatures and payloads
are kept as the exact bytes received; indexes serve timelines by time, feeds
by author and seq, threads by reply root, mentions and tags.

A :class:`Store` has a synchronous API and is used by one thread at a time
(the node calls it from a worker thread). Every entry that enters through
:meth:`Store.ingest` is checked in full (format, signature, chain); the owner's
own entries enter through :meth:`Store.append`, which assigns the next seq and
commits before it returns, so a node never reuses a seq and never forks its
own log.
"""

from __future__ import annotations

import functools
import heapq
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .entry import Entry, create_entry, parse_entry_untrusted
from .entry import entry_id as _id_of
from .errors import (
    AmbiguousId,
    BadSignature,
    ChainError,
    CorruptStore,
    DiskFull,
    EntryError,
    InvalidArgument,
    MalformedEntry,
    NotFound,
    ReadOnlyStore,
    StorageError,
)
from .payloads import (
    Block,
    Delete,
    Follow,
    Payload,
    Post,
    Profile,
    React,
    Repost,
    Unblock,
    Unfollow,
    decode_payload_untrusted,
)
from .schema import migrate
from .verifier import Verifier

__all__ = [
    "MAX_DHT_CONTACTS",
    "MAX_KNOWN_PEERS",
    "SQUARE_CAPACITY",
    "CheckedEntries",
    "FeedInfo",
    "Fork",
    "IngestReport",
    "KnownPeer",
    "RawRow",
    "SquareReport",
    "Store",
    "StoredEntry",
    "VerifyReport",
]

_ENTRY_COLUMNS: Final = (
    "entries.rowid, entries.header, entries.signature, entries.payload, entries.received,"
    " entries.deleted, entries.sort_ts, entries.id"
)

_SQUARE_COLUMNS: Final = (
    "square.rowid, square.header, square.signature, square.payload, square.received,"
    " 0, square.sort_ts, square.id"
)
#: How many posts of feeds whose logs are not held here the square keeps.
SQUARE_CAPACITY: Final = 10_000
#: The square's rowids start here, above any entry's: cursors never tie.
_SQUARE_ROWIDS: Final = 1 << 62

#: How many ids one ``IN (...)`` list holds (well under SQLite's variable limit).
_IN_LIST: Final = 500
#: What ``Store._insert`` did with an entry.
_NEW: Final = "new"
_FORK: Final = "fork"
_DUPLICATE: Final = "duplicate"

Cursor = tuple[int, int]
#: An entry's bytes as stored: header, signature and payload (``None`` once deleted).
RawRow = tuple[bytes, bytes, bytes | None]


#: SQLite's default for ``wal_autocheckpoint``.
_AUTO_CHECKPOINT_PAGES: Final = 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as the store holds it.

    ``cursor`` orders entries in timelines (newest first) and is what
    ``before=`` takes to fetch the next page.
    """

    entry: Entry
    received: int
    deleted: bool
    rowid: int
    sort_ts: int

    @property
    def cursor(self) -> Cursor:
        return (self.sort_ts, self.rowid)

    @property
    def loose(self) -> bool:
        """Whether this is a post kept for the square without its log (its
        signature is checked, its chain is not)."""
        return self.rowid >= _SQUARE_ROWIDS


@dataclass(frozen=True, slots=True)
class SquareReport:
    """What :meth:`Store.keep_on_square` did, by index in the entries given:
    those kept and those whose signature is bad (the rest were held already,
    over their author's bound or not posts)."""

    kept: tuple[int, ...]
    bad: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What :meth:`Store.ingest` did: counts, and each rejected entry's error.

    ``refused`` are the indices of the entries left out because the caller
    refuses their author (see ``refuse`` of :meth:`Store.ingest`).
    ``stored_indices`` are the indices in ``entries`` of the entries stored
    (new ones and forks, not duplicates), ascending; reports compare equal
    whatever they hold.
    """

    stored: int = 0
    duplicates: int = 0
    forks: int = 0
    rejected: tuple[tuple[int, EntryError], ...] = ()
    refused: tuple[int, ...] = ()
    stored_indices: tuple[int, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CheckedEntries:
    """Entries whose signatures the verify threads are checking, in chunks:
    what :meth:`Store.check` hands to :meth:`Store.ingest_checked`."""

    chunks: tuple[tuple[int, list[Entry], list[Future[list[BadSignature | None]]]], ...]

    def __len__(self) -> int:
        return sum(len(chunk) for _, chunk, _ in self.chunks)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :meth:`Store.verify_all` checked."""

    entries: int
    feeds: int
    payloads: int


@dataclass(frozen=True, slots=True)
class Fork:
    """Proof that ``author`` signed two different entries with one ``seq``."""

    author: bytes
    seq: int
    first: Entry
    second: Entry


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What the store knows of one feed."""

    author: bytes
    latest_seq: int
    forked: bool
    name: str | None
    bio: str | None


@dataclass(frozen=True, slots=True)
class KnownPeer:
    """A peer this node had a session with: where it was, when, and how many
    dials have failed since."""

    identity: bytes
    addresses: tuple[str, ...]
    last_seen: int
    failures: int


#: The address book keeps at most this many peers and DHT contacts.
MAX_KNOWN_PEERS: Final = 10_000
MAX_DHT_CONTACTS: Final = 500
_MAX_PEER_ADDRESSES: Final = 8


@dataclass(slots=True)
class _FeedState:
    latest_seq: int
    latest_id: bytes
    last_shown_ts: int | None = None
    forked: bool = False
    name: str | None = None
    bio: str | None = None
    profile_seq: int = 0
    dirty: bool = False


@dataclass(slots=True)
class _Batch:
    """Rows of one transaction, collected and written by ``Store._flush``.

    Rowids are given explicitly (SQLite would pick the same: the highest plus
    one) so that mentions and tags can name their entry before it is written.
    ``deletions`` holds the (target, author) requests that can apply here.
    """

    next_rowid: int
    deletions: set[tuple[bytes, bytes]]
    states: dict[bytes, _FeedState] = field(default_factory=dict)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    mentions: list[tuple[bytes, int, int]] = field(default_factory=list)
    tags: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Counts:
    stored: int = 0
    duplicates: int = 0
    forks: int = 0
    rejected: list[tuple[int, EntryError]] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    stored_indices: list[int] = field(default_factory=list)

    def report(self) -> IngestReport:
        return IngestReport(
            self.stored,
            self.duplicates,
            self.forks,
            tuple(self.rejected),
            tuple(self.refused),
            tuple(self.stored_indices),
        )


_P = ParamSpec("_P")
_R = TypeVar("_R")


#: SQLite's primary result codes that torv explains (``sqlite3`` reports the
#: extended code, whose low byte is the primary one).
_SQLITE_BUSY: Final = 5
_SQLITE_READONLY: Final = 8
_SQLITE_IOERR: Final = 10
_SQLITE_FULL: Final = 13
_SQLITE_CANTOPEN: Final = 14
#: Below this much free space, a disk error while writing is a full disk
#: (SQLite reports some of those, like a journal index that cannot grow, as I/O errors).
_NEARLY_FULL: Final = 1 << 20


def _database_file(db: sqlite3.Connection) -> Path | None:
    """The file of ``db``'s main database, if it can say."""
    try:
        for _, name, file in db.execute("PRAGMA database_list"):
            if name == "main" and file:
                return Path(file)
    except sqlite3.Error:
        pass
    return None


def _explained(exc: sqlite3.Error, path: Path | None) -> StorageError | None:
    """What ``exc`` means for a person, for the store file ``path``: a full
    disk, a directory or file that cannot be written, a lock, a disk error;
    ``None`` when SQLite's message is all there is to say."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    store = "the store" if path is None else f"the store {path}"
    directory = None if path is None else path.parent
    if code == _SQLITE_FULL or (
        code == _SQLITE_IOERR
        and directory is not None
        and directory.is_dir()
        and shutil.disk_usage(directory).free < _NEARLY_FULL
    ):
        return DiskFull(
            f"the disk is full: {store} cannot grow, and what was being written"
            " was not stored (free some space and try again)"
        )
    if (
        code in (_SQLITE_READONLY, _SQLITE_CANTOPEN)
        and directory is not None
        and directory.is_dir()
        and not os.access(directory, os.W_OK)
    ):
        return ReadOnlyStore(
            f"the data directory {directory} cannot be written (a read-only file system,"
            " or a directory this user may not write): torv keeps its store and the"
            " store's journal there"
        )
    if code == _SQLITE_READONLY:
        return ReadOnlyStore(f"{store} cannot be written ({exc}): is the file read-only?")
    if code == _SQLITE_BUSY:
        return StorageError(
            f"{store} stayed locked by another program ({exc}): is another torv"
            " writing to it outside a node?"
        )
    if code == _SQLITE_IOERR:
        return StorageError(f"the disk failed while reading or writing {store} ({exc})")
    return None


def _sqlite_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Translate SQLite's exceptions into :class:`StorageError`: :class:`DiskFull`,
    :class:`ReadOnlyStore`, or a message naming a lock or a disk error."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0]
            path = _database_file(store._db) if isinstance(store, Store) else None
            raise _explained(exc, path) or StorageError(f"the store failed: {exc}") from exc

    return wrapper


class Store:
    """A node's entries in one SQLite file.

    Open with :meth:`Store.open` (or as a context manager); :meth:`close`
    joins the verify threads and closes the database.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        verifier: Verifier | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._db = db
        self._verifier = verifier or Verifier()
        self._clock = clock
        self._changes_at_checkpoint = db.total_changes

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        workers: int | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> Store:
        """Open (creating if needed) the store at ``path`` and migrate it.

        Raises :class:`StorageError` if the file is not a torv store, is from
        a newer torv, or cannot be opened.
        """
        try:
            db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:
            explained = _explained(exc, Path(path).absolute())
            raise explained or StorageError(f"cannot open the store {path}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA cache_size = -16000")
            migrate(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            explained = _explained(exc, Path(path).absolute())
            raise explained or StorageError(f"{path} is not a usable torv store: {exc}") from exc
        except StorageError:
            db.close()
            raise
        return cls(db, verifier=Verifier(workers), clock=clock)

    def close(self) -> None:
        """Close the database and join the verify threads."""
        self._verifier.close()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- checkpoints ----------------------------------------------------------

    @property
    def auto_checkpoint(self) -> bool:
        """Whether SQLite copies the write-ahead log into the database file
        itself, in the commit that takes the log past 1,000 pages (the
        default). That commit then takes milliseconds, with two syncs to
        disk: a node whose event loop writes small rounds turns this off and
        calls :meth:`checkpoint` from a worker thread instead."""
        (pages,) = self._db.execute("PRAGMA wal_autocheckpoint").fetchone()
        return bool(pages > 0)

    @auto_checkpoint.setter
    @_sqlite_errors
    def auto_checkpoint(self, on: bool) -> None:
        self._db.execute(f"PRAGMA wal_autocheckpoint = {_AUTO_CHECKPOINT_PAGES if on else 0}")

    @property
    def changes_since_checkpoint(self) -> int:
        """Rows inserted, updated or deleted since the last :meth:`checkpoint`
        (or since the store was opened)."""
        return self._db.total_changes - self._changes_at_checkpoint

    @_sqlite_errors
    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the database file, as far
        as readers allow (a passive checkpoint: it waits for nobody)."""
        self._changes_at_checkpoint = self._db.total_changes
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # --- writing ------------------------------------------------------------

    @_sqlite_errors
    def append(
        self, key: Ed25519PrivateKey, payload: Payload, *, timestamp: int | None = None
    ) -> Entry:
        """Sign ``payload`` as the next entry of ``key``'s own log and commit it.

        The seq is read and the entry written in one exclusive transaction,
        committed before this returns; only then may anyone else see it. The
        timestamp never goes backwards in one log, even if the clock does.
        Raises :class:`InvalidArgument` for a payload peers would reject.
        """
        author = key.public_key().public_bytes_raw()
        now = self._clock() if timestamp is None else timestamp
        with self._transaction(durable=True):
            row = self._db.execute(
                "SELECT latest_seq, latest_id, forked FROM feeds WHERE author = ?", (author,)
            ).fetchone()
            seq, prev = (1, None) if row is None else (row[0] + 1, row[1])
            if row is not None and row[2]:
                raise StorageError("this identity's own log is forked; refusing to extend it")
            if prev is not None:
                (prev_ts,) = self._db.execute(
                    "SELECT ts FROM entries WHERE id = ?", (prev,)
                ).fetchone()
                now = max(now, prev_ts)
            entry = create_entry(key, seq=seq, prev=prev, timestamp=now, payload=payload)
            # Our own log's time never goes back, and neither does its order:
            # the held-back timestamp counts as the time received.
            received = self._clock()
            if timestamp is None:
                received = max(received, entry.header.timestamp)
            batch = self._batch([entry])
            self._insert(entry, received, batch)
            self._finish(batch)
        return entry

    @_sqlite_errors
    def ingest(
        self,
        entries: Iterable[Entry],
        *,
        atomic: bool = False,
        chunk_size: int = 4096,
        refuse: Container[bytes] = frozenset(),
    ) -> IngestReport:
        """Check and store entries from outside, in log order per author.

        Each entry's signature is checked in worker threads while the next
        chunk is parsed and the previous one written. An entry must extend its
        author's log (its ``prev`` is the id of the entry before it); an entry
        for a seq already held with another header is kept as a fork.

        With ``atomic=True`` everything is stored in one transaction or nothing
        is: the first invalid entry raises its :class:`EntryError`. Otherwise
        each chunk is one transaction, and invalid entries are left out and
        listed in the report with their index in ``entries``.

        A chunk is ``chunk_size`` entries. Larger chunks store faster, since
        each commit rewrites every index page its entries touched (ids are
        random); 4096 entries are a few MB in memory.

        Entries whose author is in ``refuse`` are left out and listed in the
        report's ``refused``; it is read as each entry is written, so a node
        that blocks a feed while a round is on its way to the store can hand
        its current set and know that nothing of that feed is written after
        the block's purge.
        """
        counts = _Counts()
        pending: tuple[int, list[Entry], list[Any]] | None = None
        offset = 0
        try:
            if atomic:
                self._db.execute("BEGIN IMMEDIATE")
            for chunk in _chunks(entries, chunk_size):
                futures = self._verifier.submit(chunk)
                if pending is not None:
                    self._write_chunk(
                        *pending, counts, own_transaction=not atomic, strict=atomic, refuse=refuse
                    )
                pending = (offset, chunk, futures)
                offset += len(chunk)
            if pending is not None:
                self._write_chunk(
                    *pending, counts, own_transaction=not atomic, strict=atomic, refuse=refuse
                )
            if atomic:
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return counts.report()

    def check(self, entries: Iterable[Entry], *, chunk_size: int = 4096) -> CheckedEntries:
        """Start checking the signatures of ``entries`` in the verify threads,
        for :meth:`ingest_checked` to store them later.

        This reads ``entries`` (parsing them, if they are parsed as they are
        read) and touches no table, so it may run in any thread while another
        writes: a node checks its next round of sync entries while it stores
        the one before, and the verify threads never wait for the writer.
        """
        chunks = []
        offset = 0
        for chunk in _chunks(entries, chunk_size):
            chunks.append((offset, chunk, self._verifier.submit(chunk)))
            offset += len(chunk)
        return CheckedEntries(tuple(chunks))

    @_sqlite_errors
    def ingest_checked(
        self, checked: CheckedEntries, *, refuse: Container[bytes] = frozenset()
    ) -> IngestReport:
        """Store what :meth:`check` started checking, as :meth:`ingest` does
        without ``atomic`` (invalid entries are left out and reported, and so
        are those whose author is in ``refuse``), but
        in one transaction: each chunk is written once its checks are done.
        Indices in the report count from the first entry given to ``check``.

        One commit for all the chunks costs less than one each: a commit
        rewrites every index page its entries touched, and with random ids
        nearly every page of the id index is touched by a few thousand entries
        (writing 4,096 entries in one commit instead of two took a third
        less time per entry in the commits).
        """
        counts = _Counts()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for offset, chunk, futures in checked.chunks:
                self._write_chunk(
                    offset,
                    chunk,
                    futures,
                    counts,
                    own_transaction=False,
                    strict=False,
                    refuse=refuse,
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return counts.report()

    def _write_chunk(
        self,
        offset: int,
        chunk: list[Entry],
        futures: list[Any],
        counts: _Counts,
        *,
        own_transaction: bool,
        strict: bool,
        refuse: Container[bytes],
    ) -> None:
        """Write ``chunk`` once its checks (``futures``) are done, in a
        transaction of its own or the caller's; ``strict``: the first invalid
        entry raises, instead of being left out and counted. Entries of the
        authors in ``refuse`` are left out and counted."""
        verdicts: list[BadSignature | None] = []
        for future in futures:
            verdicts.extend(future.result())
        received = self._clock()
        if own_transaction:
            self._db.execute("BEGIN IMMEDIATE")
        try:
            batch = self._batch(chunk)
            insert = self._insert
            for index, (entry, bad) in enumerate(zip(chunk, verdicts, strict=True)):
                if entry.header.author in refuse:
                    counts.refused.append(offset + index)
                    continue
                try:
                    if bad is not None:
                        raise bad
                    outcome = insert(entry, received, batch)
                except EntryError as exc:
                    if strict:
                        raise
                    counts.rejected.append((offset + index, exc))
                    continue
                if outcome == _DUPLICATE:
                    counts.duplicates += 1
                    continue
                counts.stored += 1
                if outcome == _FORK:
                    counts.forks += 1
                counts.stored_indices.append(offset + index)
            self._finish(batch)
            if own_transaction:
                self._db.execute("COMMIT")
        except BaseException:
            if own_transaction and self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _batch(self, entries: Sequence[Entry]) -> _Batch:
        """Start writing ``entries`` (or some of them) in the open transaction."""
        (top,) = self._db.execute("SELECT max(rowid) FROM entries").fetchone()
        deletions: set[tuple[bytes, bytes]] = set()
        if self._db.execute("SELECT 1 FROM deletions LIMIT 1").fetchone() is not None:
            ids = [entry.id for entry in entries]
            for start in range(0, len(ids), _IN_LIST):
                part = ids[start : start + _IN_LIST]
                deletions.update(
                    self._db.execute(
                        "SELECT target, author FROM deletions"
                        f" WHERE target IN ({', '.join('?' * len(part))})",
                        part,
                    )
                )
        return _Batch((top or 0) + 1, deletions)

    def _flush(self, batch: _Batch) -> None:
        """Write the rows collected so far, so that queries see them."""
        if batch.entries:
            self._db.executemany(
                "INSERT INTO entries (rowid, id, author, seq, kind, ts, sort_ts, received,"
                " header, signature, payload, deleted, shown, root, parent, target)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch.entries,
            )
            batch.entries.clear()
        if batch.mentions:
            self._db.executemany(
                "INSERT OR IGNORE INTO mentions (feed, sort_ts, entry) VALUES (?, ?, ?)",
                batch.mentions,
            )
            batch.mentions.clear()
        if batch.tags:
            self._db.executemany(
                "INSERT OR IGNORE INTO tags (tag, sort_ts, entry) VALUES (?, ?, ?)", batch.tags
            )
            batch.tags.clear()

    def _finish(self, batch: _Batch) -> None:
        self._flush(batch)
        self._flush_feeds(batch.states)

    def _feed_state(self, author: bytes, states: dict[bytes, _FeedState]) -> _FeedState | None:
        state = states.get(author)
        if state is None:
            row = self._db.execute(
                "SELECT latest_seq, latest_id, last_shown_ts, forked, name, bio, profile_seq"
                " FROM feeds WHERE author = ?",
                (author,),
            ).fetchone()
            if row is None:
                return None
            state = states[author] = _FeedState(
                row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6] or 0
            )
        return state

    def _insert(self, entry: Entry, received: int, batch: _Batch) -> str:
        """Write one checked entry; return _NEW, _FORK or _DUPLICATE.

        The row is only collected into ``batch``; every query that reads
        entries flushes the batch first.
        """
        header = entry.header
        author = header.author
        seq = header.seq
        states = batch.states
        state = states.get(author) or self._feed_state(author, states)
        outcome = _NEW
        if state is not None and seq == state.latest_seq + 1 and header.prev == state.latest_id:
            pass  # the common case: the next entry of a known log
        else:
            outcome = self._check_chain(entry, state, batch)
            if outcome == _DUPLICATE:
                return outcome
        content = entry.content
        deleted = False
        if entry.payload is not None and (entry.id, author) in batch.deletions:
            deleted = True
            entry = entry.without_payload()
            content = None
        sort_ts = min(header.timestamp, received)
        rowid = batch.next_rowid
        batch.next_rowid = rowid + 1
        shown, root, parent, target = _content_columns(header.kind, content)
        if isinstance(content, Post):
            if content.mentions:
                batch.mentions.extend((feed, sort_ts, rowid) for feed in content.mentions)
            if content.tags:
                batch.tags.extend((tag, sort_ts, rowid) for tag in content.tags)
        batch.entries.append(
            (
                rowid,
                entry.id,
                author,
                seq,
                header.kind,
                header.timestamp,
                sort_ts,
                received,
                entry.header_bytes,
                entry.signature,
                entry.payload,
                int(deleted),
                int(shown),
                root,
                parent,
                target,
            )
        )
        if outcome == _FORK:
            self._record_fork(entry)
        if state is None:
            state = states[author] = _FeedState(seq, entry.id)
        if content is not None:
            self._apply_effects(entry, content, state, batch)
        if outcome == _FORK:
            state.forked = True
        if seq > state.latest_seq or (seq == state.latest_seq and outcome == _NEW):
            state.latest_seq, state.latest_id = seq, entry.id
        if shown and (state.last_shown_ts is None or sort_ts > state.last_shown_ts):
            state.last_shown_ts = sort_ts
        state.dirty = True
        return outcome

    def _check_chain(self, entry: Entry, state: _FeedState | None, batch: _Batch) -> str:
        """The chain check off the common path: _NEW, _FORK or _DUPLICATE, or raise."""
        header = entry.header
        latest = 0 if state is None else state.latest_seq
        if header.seq > latest + 1:
            raise ChainError(
                f"gap: seq {header.seq} arrived but the log holds up to seq {latest}",
                problem="gap",
            )
        if header.seq == 1 and state is None:
            return _NEW
        self._flush(batch)
        held = self._db.execute(
            "SELECT rowid, id, payload IS NULL AND deleted = 0 FROM entries"
            " WHERE author = ? AND seq = ?",
            (header.author, header.seq),
        ).fetchall()
        for rowid, held_id, missing_payload in held:
            if held_id == entry.id:
                if missing_payload and entry.payload is not None:
                    self._fill_payload(rowid, entry, batch)
                return _DUPLICATE
        if held:
            # Another entry for this seq, even one with the same header and
            # another signature: its id differs, and later entries may link
            # to either, so both are kept and the feed is marked forked.
            return _FORK
        if not self._links(entry):
            raise ChainError(
                f"wrong prev: seq {header.seq} does not link to seq {header.seq - 1} held here",
                problem="wrong-prev",
            )
        return _NEW

    def _links(self, entry: Entry) -> bool:
        if entry.header.seq == 1:
            return True
        row = self._db.execute(
            "SELECT 1 FROM entries WHERE author = ? AND seq = ? AND id = ?",
            (entry.header.author, entry.header.seq - 1, entry.header.prev),
        ).fetchone()
        return row is not None

    def _record_fork(self, entry: Entry) -> None:
        (first,) = self._db.execute(
            "SELECT id FROM entries WHERE author = ? AND seq = ? AND id != ? ORDER BY rowid",
            (entry.header.author, entry.header.seq, entry.id),
        ).fetchone()
        self._db.execute(
            "INSERT OR IGNORE INTO forks (author, seq, first, second) VALUES (?, ?, ?, ?)",
            (entry.header.author, entry.header.seq, first, entry.id),
        )

    def _fill_payload(self, rowid: int, entry: Entry, batch: _Batch) -> None:
        """Store the payload of an entry held so far as its header alone."""
        author = entry.header.author
        content = entry.content
        if (entry.id, author) in batch.deletions or content is None:
            return
        (sort_ts,) = self._db.execute(
            "SELECT sort_ts FROM entries WHERE rowid = ?", (rowid,)
        ).fetchone()
        shown, root, parent, target = _content_columns(entry.header.kind, content)
        self._db.execute(
            "UPDATE entries SET payload = ?, shown = ?, root = ?, parent = ?, target = ?"
            " WHERE rowid = ?",
            (entry.payload, int(shown), root, parent, target, rowid),
        )
        if isinstance(content, Post):
            batch.mentions.extend((feed, sort_ts, rowid) for feed in content.mentions)
            batch.tags.extend((tag, sort_ts, rowid) for tag in content.tags)
        state = self._feed_state(author, batch.states)
        assert state is not None  # the entry's header is held, so its feed is
        if shown and (state.last_shown_ts is None or sort_ts > state.last_shown_ts):
            state.last_shown_ts = sort_ts
        self._apply_effects(entry, content, state, batch)
        state.dirty = True

    def _apply_effects(
        self, entry: Entry, content: Payload, state: _FeedState, batch: _Batch
    ) -> None:
        author, seq = entry.header.author, entry.header.seq
        if isinstance(content, Profile):
            if seq > state.profile_seq:
                state.name = content.name or state.name
                state.bio = content.bio or state.bio
                state.profile_seq = seq
        elif isinstance(content, Follow | Unfollow):
            self._set_relation(author, content.feed, "following", "follow_seq", seq, content)
        elif isinstance(content, Block | Unblock):
            self._set_relation(author, content.feed, "blocking", "block_seq", seq, content)
        elif isinstance(content, Delete):
            self._flush(batch)
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO deletions (target, author, by) VALUES (?, ?, ?)",
                (content.entry, author, entry.id),
            ).rowcount
            if inserted:
                batch.deletions.add((content.entry, author))
            row = self._db.execute(
                "SELECT rowid, kind, payload, sort_ts FROM entries WHERE id = ? AND author = ?",
                (content.entry, author),
            ).fetchone()
            if row is not None:
                rowid, kind, payload, sort_ts = row
                self._db.execute(
                    "UPDATE entries SET payload = NULL, deleted = 1, shown = 0,"
                    " root = NULL, parent = NULL, target = NULL WHERE rowid = ?",
                    (rowid,),
                )
                self._drop_mentions_and_tags(rowid, kind, payload, sort_ts)

    def _drop_mentions_and_tags(
        self, rowid: int, kind: str, payload: bytes | None, sort_ts: int
    ) -> None:
        # Only a post with its payload has mention and tag rows, and they are
        # the ones its payload names: deleting them by key avoids a scan of
        # both tables (neither is indexed by entry).
        if payload is None or kind != "post":
            return
        try:
            post = decode_payload_untrusted(kind, payload)
        except MalformedEntry:
            # A damaged payload: find the rows the slow way.
            self._db.execute("DELETE FROM mentions WHERE entry = ?", (rowid,))
            self._db.execute("DELETE FROM tags WHERE entry = ?", (rowid,))
            return
        if isinstance(post, Post):
            self._db.executemany(
                "DELETE FROM mentions WHERE feed = ? AND sort_ts = ? AND entry = ?",
                [(feed, sort_ts, rowid) for feed in post.mentions],
            )
            self._db.executemany(
                "DELETE FROM tags WHERE tag = ? AND sort_ts = ? AND entry = ?",
                [(tag, sort_ts, rowid) for tag in post.tags],
            )

    def _set_relation(
        self, author: bytes, target: bytes, column: str, seq_column: str, seq: int, content: Any
    ) -> None:
        value = int(isinstance(content, Follow | Block))
        self._db.execute(
            f"INSERT INTO relations (author, target, {column}, {seq_column}) VALUES (?, ?, ?, ?)"
            f" ON CONFLICT (author, target) DO UPDATE SET {column} = excluded.{column},"
            f" {seq_column} = excluded.{seq_column} WHERE excluded.{seq_column} > {seq_column}",
            (author, target, value, seq),
        )

    def _flush_feeds(self, states: dict[bytes, _FeedState]) -> None:
        for author, state in states.items():
            if not state.dirty:
                continue
            self._db.execute(
                "INSERT INTO feeds (author, latest_seq, latest_id, last_shown_ts, forked, name,"
                " bio, profile_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (author) DO UPDATE"
                " SET latest_seq = excluded.latest_seq, latest_id = excluded.latest_id,"
                " last_shown_ts = excluded.last_shown_ts, forked = excluded.forked,"
                " name = excluded.name, bio = excluded.bio, profile_seq = excluded.profile_seq",
                (
                    author,
                    state.latest_seq,
                    state.latest_id,
                    state.last_shown_ts,
                    state.forked,
                    state.name,
                    state.bio,
                    state.profile_seq,
                ),
            )
            state.dirty = False

    # --- reading ------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[object]) -> list[StoredEntry]:
        return [self._stored(row) for row in self._db.execute(sql, params)]

    def _stored(self, row: Sequence[Any]) -> StoredEntry:
        rowid, header, signature, payload, received, deleted, sort_ts, stored_id = row
        where = f"the entry stored as {bytes(stored_id).hex()}"
        try:
            entry = parse_entry_untrusted(header, signature, payload)
        except MalformedEntry as exc:
            raise CorruptStore(f"{where} is damaged: {exc} (run torv verify)") from exc
        if entry.id != stored_id:
            raise CorruptStore(f"{where} is damaged: its bytes give another id (run torv verify)")
        return StoredEntry(entry, received, bool(deleted), rowid, sort_ts)

    @_sqlite_errors
    def get(self, entry_id: bytes) -> StoredEntry:
        """The entry with id ``entry_id`` (in a log, or kept for the square);
        raises :class:`NotFound`."""
        found = self.find(entry_id)
        if found is None:
            raise NotFound(f"no entry {entry_id.hex()} in the store")
        return found

    @_sqlite_errors
    def find(self, entry_id: bytes) -> StoredEntry | None:
        """The entry with id ``entry_id`` (in a log, or kept for the square), or ``None``."""
        rows = self._rows(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE id = ?", (entry_id,))
        if not rows:
            rows = self._rows(f"SELECT {_SQUARE_COLUMNS} FROM square WHERE id = ?", (entry_id,))
        return rows[0] if rows else None

    @_sqlite_errors
    def resolve_prefix(self, prefix_hex: str) -> bytes:
        """The one entry id that starts with the hex digits ``prefix_hex``.

        Raises :class:`InvalidArgument` for non-hex input or fewer than 4
        digits, :class:`NotFound` or :class:`AmbiguousId`.
        """
        digits = prefix_hex.strip().lower()
        if len(digits) < 4 or len(digits) > 64 or any(c not in "0123456789abcdef" for c in digits):
            raise InvalidArgument(f"{prefix_hex!r} is not an entry id (4 to 64 hex digits)")
        low = bytes.fromhex(digits.ljust(64, "0"))
        high = bytes.fromhex(digits.ljust(64, "f"))
        ids = [
            row[0]
            for row in self._db.execute(
                "SELECT id FROM entries WHERE id BETWEEN ? AND ? LIMIT 2", (low, high)
            )
        ]
        if not ids:
            raise NotFound(f"no entry starting with {digits} in the store")
        if len(ids) > 1:
            raise AmbiguousId(f"more than one entry starts with {digits}; give more digits")
        return bytes(ids[0])

    @_sqlite_errors
    def latest_seq(self, author: bytes) -> int:
        """The highest seq held of ``author``'s log (0 if none)."""
        row = self._db.execute(
            "SELECT latest_seq FROM feeds WHERE author = ?", (author,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    @_sqlite_errors
    def feed(
        self, author: bytes, *, limit: int = 50, before_seq: int | None = None
    ) -> list[StoredEntry]:
        """Entries of ``author``'s log, highest seq first (all kinds)."""
        return self._rows(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE author = ? AND seq < ?"
            " ORDER BY seq DESC, rowid DESC LIMIT ?",
            (author, before_seq if before_seq is not None else 2**63 - 1, limit),
        )

    def log(self, author: bytes, *, from_seq: int = 1) -> Iterator[StoredEntry]:
        """Every entry of ``author``'s log from ``from_seq`` up, in log order."""
        try:
            cursor = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE author = ? AND seq >= ?"
                " ORDER BY seq, rowid",
                (author, from_seq),
            )
            for row in cursor:
                yield self._stored(row)
        except sqlite3.Error as exc:
            explained = _explained(exc, _database_file(self._db))
            raise explained or StorageError(f"the store failed: {exc}") from exc

    @_sqlite_errors
    def raw_log(
        self, author: bytes, first: int, last: int, *, limit: int | None = None
    ) -> list[RawRow]:
        """The stored bytes of ``author``'s entries ``first`` .. ``last``, in log order.

        Rows are ``(header, signature, payload)`` exactly as received (the
        payload ``None`` once deleted), not parsed again: what serving a peer
        needs, who checks everything itself. A fork's entries come after the
        first of their seq. At most ``limit`` rows, the oldest (``None``: all).
        Raises :class:`CorruptStore` if a row's bytes no longer give its id.
        """
        rows: list[RawRow] = []
        for header, signature, payload, stored_id in self._db.execute(
            "SELECT header, signature, payload, id FROM entries"
            " WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq, rowid LIMIT ?",
            (author, first, last, -1 if limit is None else limit),
        ):
            if _id_of(header, signature) != stored_id:
                raise CorruptStore(
                    f"the entry stored as {bytes(stored_id).hex()} is damaged:"
                    " its bytes give another id (run torv verify)"
                )
            rows.append((header, signature, payload))
        return rows

    @_sqlite_errors
    def following(self, author: bytes) -> list[bytes]:
        """The feeds ``author`` follows, by their latest follow entries held here."""
        return [
            bytes(row[0])
            for row in self._db.execute(
                "SELECT target FROM relations WHERE author = ? AND following = 1", (author,)
            )
        ]

    @_sqlite_errors
    def blocking(self, author: bytes) -> list[bytes]:
        """The feeds ``author`` blocks."""
        return [
            bytes(row[0])
            for row in self._db.execute(
                "SELECT target FROM relations WHERE author = ? AND blocking = 1", (author,)
            )
        ]

    @_sqlite_errors
    def followers(self, feed: bytes) -> list[bytes]:
        """The feeds held here that follow ``feed``."""
        return [
            bytes(row[0])
            for row in self._db.execute(
                "SELECT author FROM relations WHERE target = ? AND following = 1", (feed,)
            )
        ]

    @_sqlite_errors
    def feed_info(self, author: bytes) -> FeedInfo | None:
        """What the store knows of ``author``'s feed, or ``None``."""
        row = self._db.execute(
            "SELECT latest_seq, forked, name, bio FROM feeds WHERE author = ?", (author,)
        ).fetchone()
        if row is None:
            return None
        return FeedInfo(author, row[0], bool(row[1]), row[2], row[3])

    @_sqlite_errors
    def feeds(self) -> list[FeedInfo]:
        """Every feed held here."""
        return [
            FeedInfo(bytes(row[0]), row[1], bool(row[2]), row[3], row[4])
            for row in self._db.execute(
                "SELECT author, latest_seq, forked, name, bio FROM feeds ORDER BY author"
            )
        ]

    @_sqlite_errors
    def forks(self, author: bytes) -> list[Fork]:
        """The proofs held that ``author`` forked their log."""
        out = []
        for seq, first, second in self._db.execute(
            "SELECT seq, first, second FROM forks WHERE author = ? ORDER BY seq", (author,)
        ).fetchall():
            out.append(Fork(author, seq, self.get(first).entry, self.get(second).entry))
        return out

    @_sqlite_errors
    def timeline(
        self, authors: Iterable[bytes], *, limit: int = 50, before: Cursor | None = None
    ) -> list[StoredEntry]:
        """The newest shown entries (posts, reposts) of ``authors``, newest first.

        Feeds are visited from the most recently active down, and each is asked
        only for entries newer than the page's current oldest item, so a page
        costs about one index probe per feed that can still contribute.
        """
        if limit <= 0:
            return []
        wanted = set(authors)
        if not wanted:
            return []
        bound = before if before is not None else (2**63 - 1, 2**63 - 1)
        authors_list = sorted(wanted)
        feeds: list[tuple[int, bytes]] = []
        for start in range(0, len(authors_list), _IN_LIST):
            part = authors_list[start : start + _IN_LIST]
            feeds.extend(
                (row[1], bytes(row[0]))
                for row in self._db.execute(
                    "SELECT author, last_shown_ts FROM feeds WHERE last_shown_ts IS NOT NULL"
                    f" AND author IN ({', '.join('?' * len(part))})",
                    part,
                )
            )
        feeds.sort(reverse=True)
        best: list[tuple[Cursor, Sequence[Any]]] = []  # a min-heap of the page so far
        for last_shown_ts, author in feeds:
            floor = best[0][0] if len(best) >= limit else (-1, -1)
            if last_shown_ts < floor[0]:
                break
            rows = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE author = ? AND shown = 1"
                " AND sort_ts >= ? AND (sort_ts, rowid) < (?, ?)"
                " ORDER BY sort_ts DESC, rowid DESC LIMIT ?",
                (author, floor[0], bound[0], bound[1], limit),
            )
            for row in rows:
                key = (row[6], row[0])
                if len(best) < limit:
                    heapq.heappush(best, (key, row))
                elif key > best[0][0]:
                    heapq.heapreplace(best, (key, row))
                else:
                    break
        best.sort(key=lambda item: item[0], reverse=True)
        return [self._stored(row) for _, row in best]

    @_sqlite_errors
    def recent(self, *, limit: int = 50, before: Cursor | None = None) -> list[StoredEntry]:
        """The newest shown entries of every feed held here, and the posts kept
        for the square (:meth:`keep_on_square`), newest first."""
        bound = before if before is not None else (2**63 - 1, 2**63 - 1)
        logged = self._rows(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE shown = 1 AND (sort_ts, rowid) < (?, ?)"
            " ORDER BY sort_ts DESC, rowid DESC LIMIT ?",
            (bound[0], bound[1], limit),
        )
        loose = self._rows(
            f"SELECT {_SQUARE_COLUMNS} FROM square WHERE (sort_ts, rowid) < (?, ?)"
            " AND NOT EXISTS (SELECT 1 FROM entries WHERE entries.id = square.id)"
            " ORDER BY sort_ts DESC, rowid DESC LIMIT ?",
            (bound[0], bound[1], limit),
        )
        if not loose:
            return logged
        merged = heapq.merge(logged, loose, key=lambda stored: stored.cursor, reverse=True)
        return list(merged)[:limit]

    @_sqlite_errors
    def keep_on_square(
        self, entries: Sequence[Entry], allow: Callable[[Entry], bool] = lambda entry: True
    ) -> SquareReport:
        """Keep posts of feeds whose logs are not held here, for the square.

        Each post's signature is checked; its chain cannot be, since the log
        before it is not here, so it is kept apart from the logs (and shown
        by :meth:`recent`, :meth:`get` and :meth:`find`, with
        :attr:`StoredEntry.loose` set). Entries that are not posts with their
        payload, and posts held already, are passed over; ``allow`` is asked
        about each of the others (the caller's bound per author) just before
        it is kept. Past :data:`SQUARE_CAPACITY` posts the oldest kept go.
        """
        verdicts = self._verifier.check(entries)
        kept: list[int] = []
        bad: list[int] = []
        received = self._clock()
        with self._transaction():
            (top,) = self._db.execute("SELECT MAX(rowid) FROM square").fetchone()
            rowid = max(top or 0, _SQUARE_ROWIDS - 1)
            for index, (entry, error) in enumerate(zip(entries, verdicts, strict=True)):
                if error is not None:
                    bad.append(index)
                    continue
                if entry.kind != "post" or entry.payload is None or self._holds(entry.id):
                    continue
                if not allow(entry):
                    continue
                rowid += 1
                self._db.execute(
                    "INSERT INTO square (rowid, id, author, sort_ts, received, header, signature,"
                    " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rowid,
                        entry.id,
                        entry.author,
                        min(entry.header.timestamp, received),
                        received,
                        entry.header_bytes,
                        entry.signature,
                        entry.payload,
                    ),
                )
                kept.append(index)
            if kept:
                self._db.execute("DELETE FROM square WHERE rowid <= ?", (rowid - SQUARE_CAPACITY,))
        return SquareReport(tuple(kept), tuple(bad))

    @_sqlite_errors
    def drop_from_square(self, deletes: Sequence[Entry]) -> SquareReport:
        """Honour delete entries of feeds whose logs are not held here: each
        valid one removes its author's own post from the square. ``kept`` are
        the indices of the deletes that removed a post."""
        verdicts = self._verifier.check(deletes)
        done: list[int] = []
        bad: list[int] = []
        with self._transaction():
            for index, (entry, error) in enumerate(zip(deletes, verdicts, strict=True)):
                if error is not None:
                    bad.append(index)
                elif isinstance(entry.content, Delete):
                    cursor = self._db.execute(
                        "DELETE FROM square WHERE id = ? AND author = ?",
                        (entry.content.entry, entry.author),
                    )
                    if cursor.rowcount:
                        done.append(index)
        return SquareReport(tuple(done), tuple(bad))

    def _holds(self, entry_id: bytes) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM entries WHERE id = ? UNION ALL SELECT 1 FROM square WHERE id = ?",
                (entry_id, entry_id),
            ).fetchone()
            is not None
        )

    @_sqlite_errors
    def mentions(
        self, feed: bytes, *, limit: int = 50, before: Cursor | None = None
    ) -> list[StoredEntry]:
        """Posts that mention ``feed``, newest first."""
        bound = before if before is not None else (2**63 - 1, 2**63 - 1)
        return self._rows(
            f"SELECT {_ENTRY_COLUMNS} FROM mentions JOIN entries ON entries.rowid = mentions.entry"
            " WHERE mentions.feed = ? AND (mentions.sort_ts, mentions.entry) < (?, ?)"
            " ORDER BY mentions.sort_ts DESC, mentions.entry DESC LIMIT ?",
            (feed, bound[0], bound[1], limit),
        )

    @_sqlite_errors
    def tagged(
        self, tag: str, *, limit: int = 50, before: Cursor | None = None
    ) -> list[StoredEntry]:
        """Posts tagged ``tag``, newest first."""
        bound = before if before is not None else (2**63 - 1, 2**63 - 1)
        return self._rows(
            f"SELECT {_ENTRY_COLUMNS} FROM tags JOIN entries ON entries.rowid = tags.entry"
            " WHERE tags.tag = ? AND (tags.sort_ts, tags.entry) < (?, ?)"
            " ORDER BY tags.sort_ts DESC, tags.entry DESC LIMIT ?",
            (tag, bound[0], bound[1], limit),
        )

    @_sqlite_errors
    def replies(self, root: bytes) -> list[StoredEntry]:
        """Every reply in the thread that starts at ``root``, oldest first."""
        return self._rows(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE root = ? ORDER BY ts, rowid", (root,)
        )

    @_sqlite_errors
    def reactions(self, entry_id: bytes) -> dict[str, int]:
        """How many reactions of each emoji ``entry_id`` has (one per author)."""
        counts: dict[str, int] = {}
        seen: set[bytes] = set()
        for stored in self._rows(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE target = ? AND kind = 'react'"
            " ORDER BY rowid DESC",
            (entry_id,),
        ):
            content = stored.entry.content
            if isinstance(content, React) and stored.entry.author not in seen:
                seen.add(stored.entry.author)
                counts[content.emoji] = counts.get(content.emoji, 0) + 1
        return counts

    @_sqlite_errors
    def reposts(self, entry_id: bytes) -> int:
        """How many feeds reposted ``entry_id``."""
        (n,) = self._db.execute(
            "SELECT count(DISTINCT author) FROM entries WHERE target = ? AND kind = 'repost'",
            (entry_id,),
        ).fetchone()
        return int(n)

    @_sqlite_errors
    def reacted(self, entry_id: bytes, author: bytes) -> bool:
        """Whether ``author`` reacted to ``entry_id``."""
        row = self._db.execute(
            "SELECT 1 FROM entries WHERE target = ? AND kind = 'react' AND author = ? LIMIT 1",
            (entry_id, author),
        ).fetchone()
        return row is not None

    @_sqlite_errors
    def replies_to(
        self, author: bytes, *, limit: int = 50, before: Cursor | None = None
    ) -> list[StoredEntry]:
        """Other feeds' replies to ``author``'s posts, newest first."""
        bound = before if before is not None else (2**63 - 1, 2**63 - 1)
        return self._rows(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE shown = 1 AND author != ?"
            " AND parent IN (SELECT id FROM entries WHERE author = ? AND kind = 'post')"
            " AND (sort_ts, rowid) < (?, ?) ORDER BY sort_ts DESC, rowid DESC LIMIT ?",
            (author, author, bound[0], bound[1], limit),
        )

    @_sqlite_errors
    def purge(self, author: bytes) -> int:
        """Remove everything held of ``author``'s feed (a blocked feed); return
        how many entries went. The feed may be fetched again later (its log
        is then checked from seq 1, as for any new feed)."""
        with self._transaction():
            rowids = [
                row[0]
                for row in self._db.execute(
                    "SELECT rowid FROM entries WHERE author = ?", (author,)
                )
            ]
            for start in range(0, len(rowids), _IN_LIST):
                part = rowids[start : start + _IN_LIST]
                marks = ", ".join("?" * len(part))
                self._db.execute(f"DELETE FROM mentions WHERE entry IN ({marks})", part)
                self._db.execute(f"DELETE FROM tags WHERE entry IN ({marks})", part)
            self._db.execute("DELETE FROM entries WHERE author = ?", (author,))
            self._db.execute("DELETE FROM feeds WHERE author = ?", (author,))
            self._db.execute("DELETE FROM relations WHERE author = ?", (author,))
            self._db.execute("DELETE FROM forks WHERE author = ?", (author,))
            self._db.execute("DELETE FROM deletions WHERE author = ?", (author,))
            self._db.execute("DELETE FROM square WHERE author = ?", (author,))
        return len(rowids)

    @_sqlite_errors
    def engagement(
        self, authors: Iterable[bytes], *, since: int
    ) -> list[tuple[bytes, bytes, str, int]]:
        """Reactions and reposts by ``authors`` written at ``since`` (ms) or later:
        ``(target entry id, author, kind, timestamp)`` each, newest first."""
        found: list[tuple[bytes, bytes, str, int]] = []
        for author in set(authors):
            found.extend(
                (bytes(row[0]), author, row[1], row[2])
                for row in self._db.execute(
                    "SELECT target, kind, ts FROM entries WHERE author = ? AND ts >= ?"
                    " AND kind IN ('react', 'repost') AND target IS NOT NULL",
                    (author, since),
                )
            )
        found.sort(key=lambda item: item[3], reverse=True)
        return found

    @_sqlite_errors
    def summaries(self, entry_ids: Iterable[bytes]) -> dict[bytes, tuple[bytes, str, int, bool]]:
        """``id -> (author, kind, timestamp, deleted)`` for the ids held here,
        read from the index columns without decoding any entry."""
        wanted = sorted(set(entry_ids))
        found: dict[bytes, tuple[bytes, str, int, bool]] = {}
        for start in range(0, len(wanted), _IN_LIST):
            part = wanted[start : start + _IN_LIST]
            for row in self._db.execute(
                "SELECT id, author, kind, ts, deleted FROM entries"
                f" WHERE id IN ({', '.join('?' * len(part))})",
                part,
            ):
                found[bytes(row[0])] = (bytes(row[1]), row[2], row[3], bool(row[4]))
        return found

    @_sqlite_errors
    def threads_of(self, author: bytes, *, limit: int = 200) -> list[bytes]:
        """The roots of the threads ``author`` posted in (started or replied), newest first."""
        return [
            bytes(row[0])
            for row in self._db.execute(
                "SELECT coalesce(root, id) AS thread, max(sort_ts) AS latest FROM entries"
                " WHERE author = ? AND kind = 'post' GROUP BY thread"
                " ORDER BY latest DESC LIMIT ?",
                (author, limit),
            )
        ]

    @_sqlite_errors
    def in_threads(
        self, roots: Iterable[bytes], *, limit: int = 50, before: Cursor | None = None
    ) -> list[StoredEntry]:
        """Shown posts in the threads that start at ``roots`` (the roots too), newest first."""
        bound = before if before is not None else (2**63 - 1, 2**63 - 1)
        wanted = sorted(set(roots))
        rows: list[StoredEntry] = []
        for start in range(0, len(wanted), _IN_LIST):
            part = wanted[start : start + _IN_LIST]
            marks = ", ".join("?" * len(part))
            rows.extend(
                self._rows(
                    f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE shown = 1 AND kind = 'post'"
                    f" AND (root IN ({marks}) OR id IN ({marks})) AND (sort_ts, rowid) < (?, ?)"
                    " ORDER BY sort_ts DESC, rowid DESC LIMIT ?",
                    (*part, *part, bound[0], bound[1], limit),
                )
            )
        rows.sort(key=lambda stored: stored.cursor, reverse=True)
        return rows[:limit]

    @_sqlite_errors
    def search(
        self, text: str, *, limit: int = 50, before: Cursor | None = None, scan: int = 200_000
    ) -> list[StoredEntry]:
        """Posts whose text contains ``text`` (case-insensitive), newest first.

        Looks through at most ``scan`` of the newest shown entries (older ones
        than ``before``), so a search never takes unbounded time.
        """
        needle = text.casefold()
        if not needle:
            return []
        bound = before if before is not None else (2**63 - 1, 2**63 - 1)
        found: list[StoredEntry] = []
        # SQLite's lower() folds ASCII only: an ASCII needle is first looked
        # for in the payload bytes, and only candidates are decoded.
        newest = (
            "SELECT rowid AS r, sort_ts AS t, payload AS p FROM entries"
            " WHERE shown = 1 AND kind = 'post'"
            " AND (sort_ts, rowid) < (?, ?) ORDER BY sort_ts DESC, rowid DESC LIMIT ?"
        )
        params: tuple[object, ...] = (bound[0], bound[1], scan)
        if needle.isascii():
            sql = (
                f"SELECT r FROM ({newest}) WHERE instr(lower(CAST(p AS TEXT)), ?) > 0"
                " ORDER BY t DESC, r DESC"
            )
            params += (needle,)
        else:
            sql = f"SELECT r FROM ({newest}) ORDER BY t DESC, r DESC"
        rowids = [row[0] for row in self._db.execute(sql, params)]
        cursor = (
            row
            for start in range(0, len(rowids), 256)
            for row in self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE rowid IN"
                f" ({','.join('?' * len(rowids[start : start + 256]))})"
                " ORDER BY sort_ts DESC, rowid DESC",
                rowids[start : start + 256],
            )
        )
        for row in cursor:
            stored = self._stored(row)
            content = stored.entry.content
            if isinstance(content, Post) and needle in content.text.casefold():
                found.append(stored)
                if len(found) >= limit:
                    break
        return found

    @_sqlite_errors
    def count(self) -> int:
        """How many entries the store holds (forks included)."""
        (n,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
        return int(n)

    # --- the address book ---------------------------------------------------

    @_sqlite_errors
    def remember_peer(self, identity: bytes, addresses: Sequence[str]) -> None:
        """Record a successful session with ``identity`` at ``addresses`` (best first).

        Raises :class:`InvalidArgument` for a malformed identity or address.
        The book keeps the :data:`MAX_KNOWN_PEERS` most recently seen peers.
        """
        if len(identity) != 32:
            raise InvalidArgument("a peer identity is 32 bytes")
        if not 1 <= len(addresses) <= _MAX_PEER_ADDRESSES or any(
            not address or len(address) > 64 or any(c.isspace() for c in address)
            for address in addresses
        ):
            raise InvalidArgument("a peer has 1 to 8 addresses without spaces")
        with self._transaction():
            self._db.execute(
                "INSERT INTO peers (identity, addresses, last_seen, failures) VALUES (?, ?, ?, 0)"
                " ON CONFLICT (identity) DO UPDATE SET addresses = excluded.addresses,"
                " last_seen = excluded.last_seen, failures = 0",
                (identity, " ".join(addresses), self._clock()),
            )
            self._db.execute(
                "DELETE FROM peers WHERE identity IN (SELECT identity FROM peers"
                " ORDER BY last_seen DESC LIMIT -1 OFFSET ?)",
                (MAX_KNOWN_PEERS,),
            )

    @_sqlite_errors
    def peer_failed(self, identity: bytes) -> None:
        """Count a failed dial of ``identity`` (known peers only)."""
        with self._transaction():
            self._db.execute(
                "UPDATE peers SET failures = failures + 1 WHERE identity = ?", (identity,)
            )

    @_sqlite_errors
    def known_peers(self, *, limit: int = 100) -> list[KnownPeer]:
        """Peers to dial, the most promising first (fewest failures, seen latest)."""
        return [
            KnownPeer(bytes(row[0]), tuple(row[1].split()), row[2], row[3])
            for row in self._db.execute(
                "SELECT identity, addresses, last_seen, failures FROM peers"
                " ORDER BY failures, last_seen DESC LIMIT ?",
                (limit,),
            )
        ]

    @_sqlite_errors
    def remember_dht_contacts(self, contacts: Sequence[tuple[str, int]]) -> None:
        """Record DHT contacts (host, port) seen now, to rejoin the DHT after a
        restart without any seed; keeps the :data:`MAX_DHT_CONTACTS` latest."""
        now = self._clock()
        with self._transaction():
            self._db.executemany(
                "INSERT INTO dht_contacts (host, port, last_seen) VALUES (?, ?, ?)"
                " ON CONFLICT (host, port) DO UPDATE SET last_seen = excluded.last_seen",
                [(host, port, now) for host, port in contacts],
            )
            self._db.execute(
                "DELETE FROM dht_contacts WHERE rowid IN (SELECT rowid FROM dht_contacts"
                " ORDER BY last_seen DESC LIMIT -1 OFFSET ?)",
                (MAX_DHT_CONTACTS,),
            )

    @_sqlite_errors
    def dht_contacts(self, *, limit: int = 50) -> list[tuple[str, int]]:
        """The DHT contacts seen latest."""
        return [
            (row[0], row[1])
            for row in self._db.execute(
                "SELECT host, port FROM dht_contacts ORDER BY last_seen DESC LIMIT ?", (limit,)
            )
        ]

    # --- checking -----------------------------------------------------------

    @_sqlite_errors
    def verify_all(self, *, chunk_size: int = 2048) -> VerifyReport:
        """Re-check every stored entry: format, payload hash, signature, chain.

        Raises :class:`CorruptStore` naming the first entry (author, seq, id)
        that fails, or :class:`StorageError` if SQLite reports damage.
        """
        try:
            (check,) = self._db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"the database file is damaged: {exc}") from exc
        if check != "ok":
            raise StorageError(f"the database file is damaged: {check}")
        entries = feeds = payloads = 0
        previous_author: bytes | None = None
        ids_by_seq: dict[int, set[bytes]] = {}
        rows = self._db.execute(
            "SELECT rowid, header, signature, payload, author, seq, id FROM entries"
            " ORDER BY author, seq, rowid"
        )
        while batch := rows.fetchmany(chunk_size):
            parsed: list[Entry] = []
            places: list[str] = []
            for _rowid, header, signature, payload, author, seq, stored_id in batch:
                # Named by the id it is stored (and shown) under.
                where = (
                    f"entry {bytes(stored_id).hex()}"
                    f" (author {bytes(author).hex()[:16]}, seq {seq})"
                )
                try:
                    entry = parse_entry_untrusted(header, signature, payload)
                except MalformedEntry as exc:
                    raise CorruptStore(f"{where}: {exc}") from exc
                parsed.append(entry)
                places.append(where)
            verdicts = self._verifier.check(parsed)
            for entry, bad, where, row in zip(parsed, verdicts, places, batch, strict=True):
                if bad is not None:
                    raise CorruptStore(f"{where}: {bad}")
                if entry.id != row[6]:
                    raise CorruptStore(f"{where}: its header and signature give another id")
                if entry.author != row[4] or entry.seq != row[5]:
                    raise CorruptStore(
                        f"{where}: the indexed author or seq disagree with its header"
                    )
                if entry.author != previous_author:
                    previous_author, ids_by_seq = entry.author, {}
                    feeds += 1
                    if entry.seq != 1:
                        raise CorruptStore(f"{where}: the log does not start at seq 1")
                elif entry.seq not in ids_by_seq and entry.seq - 1 not in ids_by_seq:
                    raise CorruptStore(f"{where}: the log has a gap before this entry")
                # A fork's second branch may not link; only a lone entry must.
                if (
                    entry.seq > 1
                    and entry.header.prev not in ids_by_seq.get(entry.seq - 1, ())
                    and entry.seq not in ids_by_seq
                ):
                    raise CorruptStore(f"{where}: prev does not match the entry before")
                ids_by_seq.setdefault(entry.seq, set()).add(entry.id)
                ids_by_seq.pop(entry.seq - 2, None)
                entries += 1
                payloads += entry.payload is not None
        return VerifyReport(entries, feeds, payloads)

    # --- helpers ------------------------------------------------------------

    def _transaction(self, *, durable: bool = False) -> _Transaction:
        return _Transaction(self._db, durable)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception;
    ``durable``: the commit is synced to disk before it returns."""

    def __init__(self, db: sqlite3.Connection, durable: bool) -> None:
        self._db = db
        self._durable = durable

    def __enter__(self) -> None:
        if self._durable:
            self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self._db.execute("COMMIT")
            elif self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            if self._durable:
                self._db.execute("PRAGMA synchronous = NORMAL")


def _content_columns(
    kind: str, content: Payload | None
) -> tuple[bool, bytes | None, bytes | None, bytes | None]:
    """(shown, reply root, reply parent, target) of an entry's payload."""
    if isinstance(content, Post):
        return True, content.root, content.parent, None
    if isinstance(content, Repost):
        return True, None, None, content.entry
    if isinstance(content, React | Delete):
        return False, None, None, content.entry
    if isinstance(content, Follow | Unfollow | Block | Unblock):
        return False, None, None, content.feed
    return False, None, None, None


def _chunks(items: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
