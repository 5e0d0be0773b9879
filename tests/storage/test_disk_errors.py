"""A full disk and a read-only data directory: torv says so in words a person
understands, the process goes on, and every entry committed before is kept.

The full disk is simulated with SQLite's ``max_page_count`` on the store's
connection (a database that may not grow fails exactly as on a full disk),
and, where this machine allows a private mount namespace, with a real tiny
tmpfs. Root may write into any directory, so for the read-only data directory
the child process gives up that power (``CAP_DAC_OVERRIDE``) before it runs
``torv``; the directory's permission bits then hold for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Final

import pytest
import trio

from node import Home, LocalNode
from node.control import ControlClient
from node.runtime import Node
from node.testing import open_swarm
from storage import DiskFull, Post, ReadOnlyStore, StorageError, Store

from .helpers import chain, make_key, posts, public

TORV = Path(sys.executable).parent / "torv"

#: A page limit above any store in these tests: the disk has room again.
_ROOM: Final = 1 << 30


def _fill_disk(store: Store) -> None:
    """From now on the store cannot grow, as on a full disk."""
    db = store._db
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")


def _make_room(store: Store) -> None:
    store._db.execute(f"PRAGMA max_page_count = {_ROOM}")


def _big_post(n: int) -> Post:
    return Post(text=f"filling the disk {n} " + "x" * 3000)


# --- the store --------------------------------------------------------------------


def test_appending_on_a_full_disk_says_so_and_keeps_every_committed_entry(
    tmp_path: Path,
) -> None:
    key, path = make_key(1), tmp_path / "store.db"
    me = public(key)
    with Store.open(path) as store:
        committed = [store.append(key, Post(text="before")).id]
        _fill_disk(store)
        with pytest.raises(DiskFull) as caught:  # noqa: PT012 (fill until it fails)
            for n in range(1000):
                committed.append(store.append(key, _big_post(n)).id)
        assert isinstance(caught.value, StorageError)
        message = str(caught.value)
        assert message.startswith("the disk is full:")
        assert str(path) in message
        assert "free some space" in message
        # The same store goes on: it reads, and once there is room it writes
        # the next seq (the failed append used none).
        assert store.latest_seq(me) == len(committed)
        _make_room(store)
        committed.append(store.append(key, Post(text="after")).id)
    with Store.open(path) as store:
        assert store.verify_all().entries == len(committed)
        assert [stored.entry.id for stored in store.log(me)] == committed


def test_ingesting_on_a_full_disk_keeps_the_chunks_committed_before(tmp_path: Path) -> None:
    author = make_key(2)
    entries = chain(author, [_big_post(n) for n in range(120)])
    path = tmp_path / "store.db"
    with Store.open(path) as store:
        store.ingest(entries[:10])
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
        store._db.execute(f"PRAGMA max_page_count = {pages + 30}")
        with pytest.raises(DiskFull, match=r"^the disk is full"):
            store.ingest(entries[10:], chunk_size=10)
        held = store.latest_seq(public(author))
        # Whole chunks (one transaction each) or nothing of a chunk.
        assert 10 <= held < 120
        assert held % 10 == 0
        with pytest.raises(DiskFull):
            store.ingest(entries[held:], atomic=True)
        assert store.latest_seq(public(author)) == held
        _make_room(store)
        assert store.ingest(entries[held:]).stored == 120 - held
    with Store.open(path) as store:
        assert store.verify_all().entries == 120


def test_a_store_that_cannot_be_written_says_so_and_still_reads(tmp_path: Path) -> None:
    key, path = make_key(3), tmp_path / "store.db"
    with Store.open(path) as store:
        kept = store.append(key, Post(text="kept"))
    db = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    store = Store(db)
    try:
        with pytest.raises(ReadOnlyStore, match="cannot be written"):
            store.append(key, Post(text="refused"))
        with pytest.raises(ReadOnlyStore, match="cannot be written"):
            store.ingest(posts(make_key(4), 3))
        assert store.get(kept.id).entry == kept
    finally:
        store.close()
    with Store.open(path) as store:
        assert store.verify_all().entries == 1


# A real full disk: a 256 KiB tmpfs mounted in a private mount namespace
# (it disappears with the process). Appends until the disk is full, then
# ingests another feed; checks the store while the disk is still full.
_ON_TMPFS = textwrap.dedent(
    """
    import hashlib, json, sys
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from storage import Post, Store, StorageError, create_entry

    def key(n):
        return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"k%d" % n).digest())

    mine, theirs = key(1), key(2)
    me = mine.public_key().public_bytes_raw()
    path = sys.argv[1] + "/store.db"
    errors = []
    with Store.open(path) as store:
        appended = 0
        try:
            while appended < 10_000:
                store.append(mine, Post(text="z" * 3000))
                appended += 1
        except StorageError as exc:
            errors.append([type(exc).__name__, str(exc)])
        entries, prev = [], None
        for seq in range(1, 50):
            entry = create_entry(
                theirs, seq=seq, prev=prev, timestamp=seq, payload=Post(text="y" * 3000)
            )
            entries.append(entry)
            prev = entry.id
        try:
            store.ingest(entries)
        except StorageError as exc:
            errors.append([type(exc).__name__, str(exc)])
    with Store.open(path) as store:
        report = store.verify_all()
        held = store.latest_seq(me)
    print(json.dumps({"appended": appended, "held": held, "verified": report.entries,
                      "errors": errors}))
    """
)


def _private_tmpfs(directory: Path, size: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"',
            str(directory),
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_real_full_disk_says_so_and_keeps_every_committed_entry(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or (
        _private_tmpfs(tmp_path, "64k", "true").returncode != 0
    ):
        pytest.skip("no private mount namespace with a tmpfs on this machine")
    result = _private_tmpfs(tmp_path, "256k", sys.executable, "-c", _ON_TMPFS, str(tmp_path))
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["appended"] > 0
    assert outcome["held"] == outcome["appended"]
    assert outcome["verified"] >= outcome["appended"]
    assert [kind for kind, _ in outcome["errors"]] == ["DiskFull", "DiskFull"]
    assert all(message.startswith("the disk is full") for _, message in outcome["errors"])


# --- a read-only data directory, through the command line -----------------------------

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def _without_override() -> None:
    """In the child, before ``exec``: give up root's power to write anywhere."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_without_override(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_without_override if os.geteuid() == 0 else None,
    )


@pytest.fixture
def read_only_home(tmp_path: Path) -> Iterator[Path]:
    """A data directory with an identity and one post, made read-only."""
    home = tmp_path / "home"
    LocalNode.init(Home(home))
    with LocalNode.open(Home(home)) as local:
        local.post("written before")
    home.chmod(0o500)
    try:
        probe = _run_without_override(sys.executable, "-c", f"open({str(home / 'probe')!r}, 'x')")
        if probe.returncode == 0:
            pytest.skip("this machine cannot make a directory read-only for a child process")
        yield home
    finally:
        home.chmod(0o700)


@pytest.mark.parametrize(
    "command",
    [("post", "refused"), ("run", "--listen", "127.0.0.1:0")],
    ids=["post", "run"],
)
def test_a_read_only_data_directory_is_named_in_one_line(
    read_only_home: Path, command: tuple[str, ...]
) -> None:
    result = _run_without_override(
        str(TORV), command[0], "--data-dir", str(read_only_home), *command[1:]
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"torv: error: the data directory {read_only_home} cannot be written"
        " (a read-only file system, or a directory this user may not write):"
        " torv keeps its store and the store's journal there"
    ]
    assert result.stdout == ""
    read_only_home.chmod(0o700)
    with Store.open(Home(read_only_home).store_path) as store:
        assert store.verify_all().entries == 1
        (held,) = store.recent(limit=5)
        assert held.entry.content == Post(text="written before")


# --- a running node whose disk fills ----------------------------------------------


class _Heard(logging.Handler):
    """Sets ``event`` when a log record says ``words`` (logged in the trio thread)."""

    def __init__(self, event: trio.Event, words: str) -> None:
        super().__init__()
        self.event = event
        self.words = words

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


@contextlib.contextmanager
def _hearing(words: str) -> Iterator[trio.Event]:
    event = trio.Event()
    handler = _Heard(event, words)
    logger = logging.getLogger("torv.node")
    logger.addHandler(handler)
    try:
        yield event
    finally:
        logger.removeHandler(handler)


def _post_through_control(node: Node, text: str) -> Callable[[], object]:
    def call() -> object:
        client = ControlClient.connect(Home(node.local.home.path), timeout=30)
        assert client is not None
        with client:
            return client.call("post", text=text)

    return call


@pytest.mark.trio
async def test_a_node_whose_disk_fills_during_gossip_logs_goes_on_and_catches_up() -> None:
    with trio.fail_after(90):
        async with open_swarm(2) as swarm:
            author, follower = swarm.nodes
            await follower.follow(author.me)
            first = await author.post("before the disk filled")
            await swarm.wait_for_entry(1, first.id, timeout=20)
            with _hearing("the disk is full") as warned:
                await follower.call_store(_fill_disk, follower.store)
                for n in range(10):
                    await author.post(f"while it was full {n} " + "x" * 3000)
                await warned.wait()
            # The node runs on; its owner's posts say why they fail, also
            # through the control socket (what `torv post` uses).
            with pytest.raises(DiskFull, match=r"^the disk is full"):
                await follower.post("mine")
            with pytest.raises(DiskFull, match=r"^the disk is full"):
                await trio.to_thread.run_sync(_post_through_control(follower, "mine"))
            await follower.call_store(_make_room, follower.store)
            last = await author.post("after there was room")
            await swarm.wait_for_seq(1, author.me, last.seq, timeout=30)
            report = await follower.call_store(follower.store.verify_all)
            assert report.entries == last.seq + 1  # and the follow


@pytest.mark.trio
async def test_a_node_that_cannot_store_a_sync_batch_logs_goes_on_and_syncs_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with trio.fail_after(90):
        async with open_swarm(2) as swarm:
            author, follower = swarm.nodes
            await follower.follow(author.me)
            await swarm.stop(1)
            for n in range(30):
                last = await author.post(f"while the follower was away {n} " + "x" * 2000)
            opened = Store.open

            def open_full(path: str | Path, **kwargs: object) -> Store:
                store = opened(path, **kwargs)  # type: ignore[arg-type]
                _fill_disk(store)
                return store

            # The follower's store is full from its start: sync, the address
            # book and the DHT contacts cannot be written.
            monkeypatch.setattr(Store, "open", open_full)
            with _hearing("the disk is full") as warned:
                follower = await swarm.start(
                    1, replace(swarm.options, bootstrap=(author.listen_address,))
                )
                monkeypatch.undo()
                await warned.wait()
            assert await follower.call_store(follower.store.latest_seq, author.me) == 0
            await follower.call_store(_make_room, follower.store)
            await swarm.wait_for_seq(1, author.me, last.seq, timeout=45)
            report = await follower.call_store(follower.store.verify_all)
            assert report.entries == last.seq + 1
