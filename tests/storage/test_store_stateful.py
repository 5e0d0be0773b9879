"""The store against a model: any sequence of appends, ingests, forks,
duplicates and deletes leaves the store agreeing with a few plain lists."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from storage.entry import Entry, create_entry
from storage.payloads import Delete, Follow, Payload, Post, Repost
from storage.store import IngestReport, Store

from .helpers import FakeClock, make_key, public

OWN = [make_key(50), make_key(51), make_key(52)]
REMOTE = [make_key(60), make_key(61)]
ALL_AUTHORS = [public(key) for key in OWN + REMOTE]


@dataclass
class Row:
    """What the model knows of one stored entry."""

    entry: Entry  # as created, with its payload
    sort_ts: int
    rowid: int


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = FakeClock(10_000)
        self.store = Store.open(Path(self.tmp.name) / "x.db", clock=self.clock)
        self.rows: dict[bytes, Row] = {}
        self.main: dict[bytes, list[Entry]] = {author: [] for author in ALL_AUTHORS}
        self.forked: set[bytes] = set()
        self.deleted: set[bytes] = set()
        self.serial = 0

    def teardown(self) -> None:
        self.store.close()
        self.tmp.cleanup()

    # --- helpers -------------------------------------------------------------

    def _text(self) -> str:
        self.serial += 1
        return f"text {self.serial}"

    def _stored(self, entry: Entry, received: int) -> None:
        sort_ts = min(entry.header.timestamp, received)
        self.rows[entry.id] = Row(entry, sort_ts, len(self.rows) + 1)
        if isinstance(entry.content, Delete):
            target = self.rows.get(entry.content.entry)
            if target is not None and target.entry.author == entry.author:
                self.deleted.add(target.entry.id)

    def _live_posts(self, author: bytes) -> list[bytes]:
        return [
            entry_id
            for entry_id, row in self.rows.items()
            if row.entry.author == author and row.entry.kind == "post"
            if entry_id not in self.deleted
        ]

    # --- rules ---------------------------------------------------------------

    # The clock only moves forward here: where an own entry sorts after the
    # clock steps back is pinned by its own test in test_store.py.
    @rule(delta=st.integers(0, 600))
    def move_clock(self, delta: int) -> None:
        self.clock.now += delta

    @rule(who=st.integers(0, len(OWN) - 1))
    def append_own_post(self, who: int) -> None:
        author = public(OWN[who])
        log = self.main[author]
        entry = self.store.append(OWN[who], Post(self._text()))
        assert entry.seq == len(log) + 1
        assert entry.header.prev == (log[-1].id if log else None)
        expected_ts = max(self.clock.now, log[-1].header.timestamp if log else 0)
        assert entry.header.timestamp == expected_ts
        log.append(entry)
        self._stored(entry, self.clock.now)

    @precondition(lambda self: any(self._live_posts(public(key)) for key in OWN))
    @rule(pick=st.integers(0, 10**6))
    def delete_own_entry(self, pick: int) -> None:
        candidates = [key for key in OWN if self._live_posts(public(key))]
        key = candidates[pick % len(candidates)]
        author = public(key)
        targets = self._live_posts(author)
        target = targets[pick % len(targets)]
        entry = self.store.append(key, Delete(target))
        self.main[author].append(entry)
        self._stored(entry, self.clock.now)

    @rule(
        who=st.integers(0, len(REMOTE) - 1),
        kinds=st.lists(
            st.sampled_from(["post", "repost", "follow", "delete"]), min_size=1, max_size=3
        ),
        timestamp=st.integers(0, 20_000),
        chunk_size=st.sampled_from([1, 2, 1024]),
    )
    def ingest_remote_entries(
        self, who: int, kinds: list[str], timestamp: int, chunk_size: int
    ) -> None:
        """The next entries of a remote log, in one ingest call."""
        key = REMOTE[who]
        author = public(key)
        log = self.main[author]
        batch: list[Entry] = []
        for kind in kinds:
            payload: Payload
            live = self._live_posts(author)
            if kind == "repost" and self.rows:
                target = next(iter(self.rows.values())).entry
                payload = Repost(entry=target.id, author=target.author)
            elif kind == "follow":
                payload = Follow(ALL_AUTHORS[timestamp % len(ALL_AUTHORS)])
            elif kind == "delete" and live:
                payload = Delete(live[timestamp % len(live)])
            else:
                payload = Post(self._text())
            entry = create_entry(
                key,
                seq=len(log) + 1,
                prev=log[-1].id if log else None,
                timestamp=timestamp + 100 * len(batch),
                payload=payload,
            )
            batch.append(entry)
            log.append(entry)
            self._stored(entry, self.clock.now)
        report = self.store.ingest(batch, chunk_size=chunk_size)
        assert report == IngestReport(stored=len(batch))

    @precondition(lambda self: any(self.main[public(key)] for key in REMOTE))
    @rule(pick=st.integers(0, 10**6), timestamp=st.integers(0, 20_000))
    def ingest_forked_entry(self, pick: int, timestamp: int) -> None:
        keys = [key for key in REMOTE if self.main[public(key)]]
        key = keys[pick % len(keys)]
        log = self.main[public(key)]
        seq = pick % len(log) + 1
        entry = create_entry(
            key,
            seq=seq,
            prev=log[seq - 2].id if seq > 1 else None,
            timestamp=timestamp,
            payload=Post(self._text()),
        )
        assert self.store.ingest([entry]) == IngestReport(stored=1, forks=1)
        self.forked.add(entry.author)
        self._stored(entry, self.clock.now)

    @precondition(lambda self: bool(self.rows))
    @rule(pick=st.integers(0, 10**6), atomic=st.booleans())
    def ingest_duplicate(self, pick: int, atomic: bool) -> None:
        rows = list(self.rows.values())
        entry = rows[pick % len(rows)].entry
        assert self.store.ingest([entry], atomic=atomic) == IngestReport(duplicates=1)

    # --- invariants ------------------------------------------------------------

    @invariant()
    def counts_and_feeds_agree(self) -> None:
        assert self.store.count() == len(self.rows)
        for author, log in self.main.items():
            assert self.store.latest_seq(author) == len(log)
            info = self.store.feed_info(author)
            if not log:
                assert info is None
                continue
            assert info is not None
            assert info.forked == (author in self.forked)
            assert len(self.store.forks(author)) == len(
                [row for row in self.rows.values() if row.entry.author == author]
            ) - len(log)

    @invariant()
    def payloads_are_kept_or_dropped(self) -> None:
        for entry_id, row in self.rows.items():
            stored = self.store.get(entry_id)
            assert stored.entry.header_bytes == row.entry.header_bytes
            if entry_id in self.deleted:
                assert stored.deleted
                assert stored.entry.payload is None
            else:
                assert not stored.deleted
                assert stored.entry.payload == row.entry.payload

    @invariant()
    def timeline_matches_the_model(self) -> None:
        shown = [
            row
            for entry_id, row in self.rows.items()
            if row.entry.kind in ("post", "repost") and entry_id not in self.deleted
        ]
        shown.sort(key=lambda row: (row.sort_ts, row.rowid), reverse=True)
        expected = [row.entry.id for row in shown]
        timeline = self.store.timeline(ALL_AUTHORS, limit=1_000)
        assert [item.entry.id for item in timeline] == expected
        assert [item.cursor for item in timeline] == [(row.sort_ts, row.rowid) for row in shown]
        paged: list[bytes] = []
        page = self.store.timeline(ALL_AUTHORS, limit=4)
        while page:
            paged += [item.entry.id for item in page]
            page = self.store.timeline(ALL_AUTHORS, limit=4, before=page[-1].cursor)
        assert paged == expected

    @invariant()
    def the_store_verifies(self) -> None:
        report = self.store.verify_all()
        assert report.entries == len(self.rows)
        assert report.payloads == len(self.rows) - len(self.deleted)
        assert report.feeds == len([log for log in self.main.values() if log])


StoreMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
TestStore = StoreMachine.TestCase
