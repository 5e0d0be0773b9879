"""`torv run` as a person runs it: two processes on loopback find each other
through a seed and stop cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

TORV = str(Path(sys.executable).parent / "torv")


def _line_matching(stream: IO[str], needle: str, deadline: float) -> str:
    """Read lines from ``stream`` until one contains ``needle`` or the deadline passes."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=left):
                line = stream.readline()
                if not line:
                    break
                if needle in line:
                    return line
    finally:
        selector.close()
    raise AssertionError(f"no line with {needle!r} before the deadline")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TORV_HOME": str(tmp_path / "default-home")}


def _init(env: dict[str, str], home: Path) -> None:
    subprocess.run(
        [TORV, "init", "--data-dir", str(home), "--no-passphrase"],
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _cli(env: dict[str, str], home: Path, *args: str) -> str:
    result = subprocess.run(
        [TORV, "--data-dir", str(home), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def _run(env: dict[str, str], home: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TORV, "run", "--data-dir", str(home), "--listen", "127.0.0.1:0", "--json", *extra],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_nodes_meet_through_a_seed_and_stop_cleanly(
    tmp_path: Path, env: dict[str, str]
) -> None:
    seed_home, other_home = tmp_path / "seed", tmp_path / "other"
    _init(env, seed_home)
    _init(env, other_home)
    deadline = time.monotonic() + 60
    seed = _run(env, seed_home)
    other: subprocess.Popen[str] | None = None
    try:
        assert seed.stdout is not None
        started = json.loads(_line_matching(seed.stdout, '"started"', deadline))
        other = _run(env, other_home, "--bootstrap", started["listen"])
        assert other.stderr is not None
        line = _line_matching(other.stderr, "peer up", deadline)
        assert "@" + started["feed"][5:13] in line
        # CLI writes go through the running nodes and reach the peer at once.
        _cli(env, other_home, "follow", started["feed"])
        posted = json.loads(_cli(env, seed_home, "post", "hello from the seed", "--json"))
        _line_matching(other.stderr, f"entry post seq {posted['seq']}", deadline)
        timeline = _cli(env, other_home, "timeline", "--json").splitlines()
        assert json.loads(timeline[0])["id"] == posted["id"]
        status = _cli(env, other_home, "status")
        assert "node: running" in status
        assert "peers: 1" in status
        other.send_signal(signal.SIGINT)
        seed.send_signal(signal.SIGTERM)
        assert other.wait(timeout=30) == 0
        assert seed.wait(timeout=30) == 0
        assert "SIGINT: stopping" in other.stderr.read()
        assert seed.stderr is not None
        assert "SIGTERM: stopping" in seed.stderr.read()
    finally:
        for process in (seed, other):
            if process is not None:
                process.kill()
                process.wait()
                for stream in (process.stdout, process.stderr):
                    if stream is not None:
                        stream.close()


def test_run_refuses_a_bad_address_in_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    _init(env, tmp_path / "n")
    result = subprocess.run(
        [TORV, "run", "--data-dir", str(tmp_path / "n"), "--listen", "nowhere"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("torv: error:")
    assert "Traceback" not in result.stderr
