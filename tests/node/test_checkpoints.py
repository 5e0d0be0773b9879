"""A running node checkpoints its store's write-ahead log from a worker
thread, not in the commits its event loop makes (``Node._checkpoints``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from node import runtime
from node.testing import open_swarm
from storage.store import Store

from ..storage.helpers import make_key, posts


def _wal_pages(store: Store) -> tuple[int, int]:
    """(pages in the log, pages of it copied into the database file)."""
    _, pages, copied = store._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return pages, copied


def test_with_auto_checkpoint_off_the_log_grows_until_checkpoint(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db") as store:
        assert store.auto_checkpoint
        store.auto_checkpoint = False
        assert not store.auto_checkpoint
        before = store.changes_since_checkpoint
        for entry in posts(make_key(1), 200):
            store.ingest([entry])
        # Two rows a round: the entry and its feed.
        assert store.changes_since_checkpoint - before == 400
        # Past SQLite's 1,000 pages: with its own checkpoints, the log would
        # have started over at 1,000. (Asking for the count copies it all.)
        pages, copied = _wal_pages(store)
        assert pages > 1000
        assert copied == pages
        store.checkpoint()
        assert store.changes_since_checkpoint == 0
        store.auto_checkpoint = True
        assert store.auto_checkpoint


@pytest.mark.trio
async def test_a_running_node_checkpoints_from_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "_CHECKPOINT_POLL", 0.01)
    monkeypatch.setattr(runtime, "_CHECKPOINT_CHANGES", 4)
    with trio.fail_after(30):
        async with open_swarm(1) as swarm:
            node = swarm.nodes[0]
            store = node.store
            assert not store.auto_checkpoint
            threads: list[int] = []
            done = trio.Event()
            checkpoint = store.checkpoint

            def watched() -> None:
                threads.append(threading.get_ident())
                checkpoint()
                trio.from_thread.run_sync(done.set)

            monkeypatch.setattr(store, "checkpoint", watched)
            for number in range(3):
                await node.post(f"post {number}")
            await done.wait()
            assert store.changes_since_checkpoint < 4
            assert threading.get_ident() not in threads
