"""SIGKILL ``torv run`` at random moments while it posts and ingests.

Two ``torv run`` processes on loopback, on a test network: the peer posts
all the time through its control socket, and the victim follows the peer (so
it ingests the peer's entries by gossip, and by sync after each restart) while
this script posts through the victim's control socket as fast as it answers.
At a random moment after each start (seeded) the victim gets SIGKILL, at any
stage: opening its store, catching up, posting, storing a gossip round.

After each kill, before the victim starts again:

- the store opens and ``torv verify`` (the CLI, a fresh process) passes;
- SQLite's ``PRAGMA integrity_check`` says ``ok``;
- the victim's own log is seq 1..n, each entry linked to the one before,
  with no fork recorded;
- every entry whose ``post`` the control socket answered with its id is held,
  with the seq it was given: an acknowledged entry is never lost.

At the end the victim runs once more and must stop cleanly on SIGTERM, and so
must the peer. Prints the kills done, the acknowledged posts, how many were
lost and how many checks failed (both must be 0), and the time taken. The
times depend on the machine (on 2 shared cores they are noisy); the counts of
lost entries and failed checks do not.

Run: ``.venv/bin/python bench/crash.py [--kills N] [--seed S] [--max-delay SECONDS]``
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from node.control import ControlClient, ControlError  # noqa: E402
from node.home import Home  # noqa: E402
from node.identity import feed_id_from_text  # noqa: E402
from node.testing import TEST_NETWORK_KEY  # noqa: E402
from storage import Post, Store, TorvError  # noqa: E402

__all__ = ["CrashReport", "run_crashes"]

_TORV = Path(sys.executable).parent / "torv"
#: How long a start, a check or a clean stop may take before it counts as a failure.
_DEADLINE = 60.0
#: The peer posts at most this often (seconds between posts), so that the
#: victim's ingest keeps up and the two processes share the CPU.
_PEER_PACE = 0.05
#: The share of kills that come while the node starts, within this many
#: seconds of its start (before it says it has started, mostly).
_DURING_START = 0.2
_START_WINDOW = 0.6


@dataclass(slots=True)
class CrashReport:
    """What :func:`run_crashes` saw. ``problems`` says what failed, in words."""

    kills: int = 0
    seconds: float = 0.0
    acknowledged: int = 0
    lost: int = 0
    verify_failures: int = 0
    fork_failures: int = 0
    #: Kills that came before the victim said it had started.
    early_kills: int = 0
    #: Posts sent but not yet answered at a kill, and how many of them were
    #: stored anyway (committed, the answer not sent): either is correct.
    in_flight: int = 0
    in_flight_stored: int = 0
    own_entries: int = 0
    peer_posted: int = 0
    peer_held: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.verify_failures == 0

    def lines(self) -> list[str]:
        return [
            f"kills done:          {self.kills} ({self.early_kills} before the node said it"
            " had started)",
            f"acknowledged posts:  {self.acknowledged} (own log now {self.own_entries} entries;"
            f" {self.in_flight} posts in flight at a kill, {self.in_flight_stored} of them"
            " stored)",
            f"lost:                {self.lost}",
            f"verify failures:     {self.verify_failures} (torv verify or integrity_check)",
            f"own log forked or unlinked: {self.fork_failures}",
            f"peer entries held:   {self.peer_held} of {self.peer_posted} the peer posted"
            " (after the last restart)",
            f"time taken:          {self.seconds:.1f} s",
        ]


def _line(stream: IO[str], deadline: float) -> str | None:
    """The next line of ``stream``, or ``None`` at the deadline or at its end."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=left):
                return stream.readline() or None
        return None
    finally:
        selector.close()


def _free_port() -> int:
    """A port number free on 127.0.0.1 for both TCP and UDP (the DHT), just now."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        tcp.bind(("127.0.0.1", 0))
        port: int = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        return port


class _RunningNode:
    """One ``torv run`` process; its log (stderr) is appended to ``<home>.log``."""

    def __init__(self, home: Path, listen: str, *extra: str) -> None:
        self.home = home
        self.log_path = home.with_name(home.name + ".log")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(_TORV),
                    "run",
                    "--data-dir",
                    str(home),
                    "--listen",
                    listen,
                    "--network-key",
                    TEST_NETWORK_KEY.hex(),
                    "--json",
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.started: dict[str, Any] | None = None

    def wait_started(self, deadline: float) -> bool:
        """Read the ``started`` line (once); False if the deadline (or the end) came first."""
        if self.started is not None:
            return True
        assert self.process.stdout is not None
        line = _line(self.process.stdout, deadline)
        if line is None:
            return False
        self.started = json.loads(line)
        return True

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=_DEADLINE)
        self._close()

    def stop(self) -> int | None:
        """SIGTERM, and the exit status (``None`` if it did not stop in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            self._close()

    def _close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()


class _Poster(threading.Thread):
    """Posts through a node's control socket until the node goes away.

    ``acknowledged`` holds ``(seq, id)`` of each post the node answered;
    ``in_flight`` is the text of a post sent and not answered when it stopped.
    """

    def __init__(self, home: Path, label: str, pace: float = 0.0) -> None:
        super().__init__(name=f"post-{label}", daemon=True)
        self.home = Home(home)
        self.label = label
        self.pace = pace
        self.acknowledged: list[tuple[int, bytes]] = []
        self.in_flight: str | None = None
        self.error: str | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        client = ControlClient.connect(self.home, timeout=_DEADLINE)
        if client is None:
            self.error = "the control socket did not answer"
            return
        with client:
            count = 0
            while not self.halt.is_set():
                count += 1
                self.in_flight = f"{self.label} post {count}"
                try:
                    result = client.call("post", text=self.in_flight)
                except ControlError:
                    return  # the node was killed: the connection ended
                except TorvError as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                    return
                self.acknowledged.append((result["seq"], result["id"]))
                self.in_flight = None
                if self.pace:
                    self.halt.wait(self.pace)


def _torv_verify(home: Path) -> str | None:
    """``torv verify``'s complaint, or ``None`` if it passed."""
    result = subprocess.run(
        [str(_TORV), "verify", "--data-dir", str(home)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_DEADLINE,
    )
    if result.returncode != 0 or not result.stdout.startswith("ok:"):
        return f"torv verify exited {result.returncode}: {result.stderr.strip()}"
    return None


def _integrity(path: Path) -> str | None:
    db = sqlite3.connect(path)
    try:
        rows = [row[0] for row in db.execute("PRAGMA integrity_check")]
    finally:
        db.close()
    return None if rows == ["ok"] else f"integrity_check: {'; '.join(rows[:5])}"


def _own_log_problem(store: Store, me: bytes) -> str | None:
    if store.forks(me):
        return "the own log has a fork record"
    info = store.feed_info(me)
    if info is not None and info.forked:
        return "the own log is marked forked"
    previous: bytes | None = None
    for expected, stored in enumerate(store.log(me), start=1):
        entry = stored.entry
        if entry.seq != expected or entry.header.prev != previous:
            return f"the own log does not link at seq {expected} (found seq {entry.seq})"
        previous = entry.id
    return None


def run_crashes(
    kills: int,
    seed: int,
    *,
    max_delay: float = 2.0,
    directory: Path | None = None,
    progress: Callable[[CrashReport], None] | None = None,
) -> CrashReport:
    """Kill the victim ``kills`` times, checking its store after each kill.

    The moments come from ``seed``: a fifth of the kills come while the node
    starts, the others up to ``max_delay`` seconds (uniform) after it said
    it had started.
    """
    rng = random.Random(seed)
    report = CrashReport()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="torv-crash-", dir=directory) as tmp:
        root = Path(tmp)
        peer_home, victim_home = root / "peer", root / "victim"
        for home in (peer_home, victim_home):
            subprocess.run(
                [str(_TORV), "init", "--data-dir", str(home), "--no-passphrase"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=True,
                timeout=_DEADLINE,
            )
        peer = _RunningNode(peer_home, "127.0.0.1:0")
        if not peer.wait_started(time.monotonic() + _DEADLINE) or peer.started is None:
            peer.stop()
            raise RuntimeError(f"the peer did not start; see {peer.log_path}")
        peer_feed = feed_id_from_text(peer.started["feed"])
        # The victim comes back on its port, as a seed under systemd does.
        # (On a new port, the peer's DHT table would hold its old address.)
        victim_args = (f"127.0.0.1:{_free_port()}", "--bootstrap", peer.started["listen"])
        peer_poster = _Poster(peer_home, "peer", pace=_PEER_PACE)
        peer_poster.start()
        acknowledged: dict[bytes, int] = {}
        me: bytes | None = None
        victim: _RunningNode | None = None
        try:
            # The first start: follow the peer (an acknowledged entry too).
            victim = _RunningNode(victim_home, *victim_args)
            if not victim.wait_started(time.monotonic() + _DEADLINE) or victim.started is None:
                raise RuntimeError(f"the victim did not start; see {victim.log_path}")
            me = feed_id_from_text(victim.started["feed"])
            client = ControlClient.connect(Home(victim_home), timeout=_DEADLINE)
            assert client is not None
            with client:
                result = client.call("follow", feed=peer_feed)
            acknowledged[result["id"]] = result["seq"]
            report.acknowledged += 1
            for _ in range(kills):
                # One kill in five comes while the node starts (opening its
                # store, joining); the others while it runs, posts and ingests.
                poster: _Poster | None = None
                if rng.random() < _DURING_START:
                    kill_at = time.monotonic() + rng.uniform(0.0, _START_WINDOW)
                    started = victim.wait_started(kill_at)
                else:
                    started = victim.wait_started(time.monotonic() + _DEADLINE)
                    kill_at = time.monotonic() + rng.uniform(0.0, max_delay)
                    if not started:
                        report.problems.append(f"kill {report.kills + 1}: the node did not start")
                if started:
                    poster = _Poster(victim_home, f"kill {report.kills + 1}")
                    poster.start()
                    time.sleep(max(0.0, kill_at - time.monotonic()))
                else:
                    report.early_kills += 1
                victim.kill()
                report.kills += 1
                if poster is not None:
                    poster.join(timeout=_DEADLINE)
                    acknowledged.update((entry_id, seq) for seq, entry_id in poster.acknowledged)
                    report.acknowledged += len(poster.acknowledged)
                    if poster.error is not None:
                        report.problems.append(f"kill {report.kills}: post: {poster.error}")
                in_flight = poster.in_flight if poster is not None else None
                _check(victim_home, me, acknowledged, in_flight, report)
                if progress is not None:
                    report.seconds = time.monotonic() - began
                    progress(report)
                victim = _RunningNode(victim_home, *victim_args)
            # The last start catches up with everything the peer posted and
            # stops cleanly.
            if not victim.wait_started(time.monotonic() + _DEADLINE):
                report.problems.append("the victim did not start after the last kill")
            peer_poster.halt.set()
            peer_poster.join(timeout=_DEADLINE)
            target = len(peer_poster.acknowledged)
            report.peer_held = _wait_for_seq(victim_home, peer_feed, target)
            if report.peer_held < target:
                report.problems.append(
                    f"the victim caught up to seq {report.peer_held} of the peer's {target}"
                )
            status = victim.stop()
            if status != 0:
                report.problems.append(f"the victim's clean stop exited {status}")
        finally:
            peer_poster.halt.set()
            peer_poster.join(timeout=_DEADLINE)
            status = peer.stop()
            if status != 0:
                report.problems.append(f"the peer's clean stop exited {status}")
            if victim is not None and victim.process.poll() is None:
                victim.kill()
        report.peer_posted = len(peer_poster.acknowledged)
        if peer_poster.error is not None:
            report.problems.append(f"the peer's posts: {peer_poster.error}")
        for log_path in (peer.log_path, victim.log_path):
            if "Traceback" in log_path.read_text(errors="replace"):
                report.problems.append(f"a traceback in {log_path.name}")
        with Store.open(Home(victim_home).store_path) as store:
            assert me is not None
            report.own_entries = store.latest_seq(me)
    report.seconds = time.monotonic() - began
    return report


def _wait_for_seq(home: Path, feed: bytes, seq: int) -> int:
    """Wait (a deadline, polling the running node's store) until ``feed`` is
    held up to ``seq``; the seq held then."""
    deadline = time.monotonic() + _DEADLINE
    with Store.open(Home(home).store_path) as store:
        while (held := store.latest_seq(feed)) < seq and time.monotonic() < deadline:
            time.sleep(0.1)
    return held


def _check(
    home: Path,
    me: bytes,
    acknowledged: dict[bytes, int],
    in_flight: str | None,
    report: CrashReport,
) -> None:
    """The checks after one kill; failures are counted and described in ``report``."""
    where = f"kill {report.kills}"
    path = Home(home).store_path
    problems = [problem for problem in (_torv_verify(home), _integrity(path)) if problem]
    if problems:
        report.verify_failures += 1
        report.problems.extend(f"{where}: {problem}" for problem in problems)
    with Store.open(path) as store:
        problem = _own_log_problem(store, me)
        if problem is not None:
            report.fork_failures += 1
            report.problems.append(f"{where}: {problem}")
        for entry_id, seq in acknowledged.items():
            held = store.find(entry_id)
            if held is None or held.entry.seq != seq:
                report.lost += 1
                report.problems.append(f"{where}: acknowledged entry {entry_id.hex()[:10]} lost")
        if in_flight is not None:
            report.in_flight += 1
            latest = store.feed(me, limit=1)
            content = latest[0].entry.content if latest else None
            if isinstance(content, Post) and content.text == in_flight:
                report.in_flight_stored += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="how many SIGKILLs (100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments (1)")
    parser.add_argument(
        "--max-delay",
        type=float,
        default=2.0,
        help="a kill comes up to this many seconds after the node started (2.0)",
    )
    args = parser.parse_args()

    def progress(report: CrashReport) -> None:
        if report.kills % 10 == 0 or report.kills == args.kills:
            print(
                f"  {report.kills:>4} kills, {report.acknowledged:>6} acknowledged,"
                f" lost {report.lost}, verify failures {report.verify_failures},"
                f" {report.seconds:6.1f} s",
                flush=True,
            )

    print(
        f"crash: {args.kills} SIGKILLs of `torv run` (seed {args.seed}; a fifth while it"
        f" starts, the others up to {args.max_delay} s after it started)",
        flush=True,
    )
    report = run_crashes(args.kills, args.seed, max_delay=args.max_delay, progress=progress)
    print("\n".join(report.lines()))
    for problem in report.problems[:20]:
        print(f"  problem: {problem}")
    if not report.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
