"""A node killed while it posts keeps every entry it acknowledged and never
reuses a seq: the append commits before it returns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage import Post, Store

SEED = bytes(range(32))

# Appends posts forever, printing each entry id once append() has returned.
WRITER = textwrap.dedent(
    """
    import sys
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from storage import Post, Store

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    store = Store.open(sys.argv[1])
    n = 0
    while True:
        n += 1
        entry = store.append(key, Post(text=f"post {n}"))
        print(entry.seq, entry.id.hex(), flush=True)
    """
)


def _run_and_kill(db: Path, acknowledged: int) -> list[tuple[int, str]]:
    """Start the writer, read ``acknowledged`` acks, SIGKILL it mid-stream."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    acks: list[tuple[int, str]] = []
    try:
        assert child.stdout is not None
        while len(acks) < acknowledged:
            line = child.stdout.readline()
            assert line, f"the writer stopped early (exit {child.poll()})"
            seq, entry_id = line.split()
            acks.append((int(seq), entry_id))
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()
    return acks


def test_killed_writer_loses_no_acknowledged_entry_and_reuses_no_seq(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    author = key.public_key().public_bytes_raw()
    all_acks: list[tuple[int, str]] = []
    for round_ in range(3):
        acks = _run_and_kill(db, acknowledged=20 + 7 * round_)
        all_acks.extend(acks)
        with Store.open(db) as store:
            report = store.verify_all()
            held = {stored.entry.id.hex(): stored.entry.seq for stored in store.log(author)}
            for seq, entry_id in all_acks:
                assert held.get(entry_id) == seq
            # Exactly one entry per seq, 1..latest: no fork of our own log.
            assert sorted(held.values()) == list(range(1, store.latest_seq(author) + 1))
            assert report.entries == len(held)
            assert store.feed_info(author) is not None
            assert not store.forks(author)
            after = store.append(key, Post(text="after the crash"))
            assert after.seq == store.latest_seq(author) == len(held) + 1
            all_acks.append((after.seq, after.id.hex()))
