"""Private files: the key file and the data directory are refused when other
users can reach them, and torv creates them private whatever the umask.

The tests run as root on the project's machines, where the permission bits do
not stop the process itself: they check the bits with ``os.stat``, which is
what torv checks too.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from node import Home, IdentityError, KeyFile, LocalNode, UnsafePermissions
from node.control import CONTROL_SOCKET, ControlClient, serve_control

TORV = Path(sys.executable).parent / "torv"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block under ``mask`` (the umask is per process: restored after)."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A data directory holding an identity, as ``torv init`` leaves it."""
    created = Home(tmp_path / "torv")
    LocalNode.init(created)
    return created


# --- the key file ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640, 0o440], ids=oct)
def test_a_key_file_others_can_read_is_refused_with_the_fix(home: Home, mode: int) -> None:
    home.key_path.chmod(mode)
    with pytest.raises(UnsafePermissions) as raised:
        LocalNode.open(home)
    message = str(raised.value)
    assert str(home.key_path) in message
    assert f"chmod 600 {home.key_path}" in message
    assert f"mode {mode:04o}" in message
    assert "can post as you" in message
    # A subclass of IdentityError: callers that catch that still do.
    assert isinstance(raised.value, IdentityError)


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o610, 0o601], ids=oct)
def test_a_key_file_others_can_change_or_run_is_refused_too(home: Home, mode: int) -> None:
    home.key_path.chmod(mode)
    with pytest.raises(UnsafePermissions, match=re.escape(f"chmod 600 {home.key_path}")) as raised:
        KeyFile.load(home.key_path)
    # They could not read it: no need to say the identity may be lost.
    assert "can post as you" not in str(raised.value)


def test_a_key_file_with_only_the_owners_execute_bit_is_accepted(home: Home) -> None:
    # Nobody else gains anything from the owner's own x bit.
    home.key_path.chmod(0o700)
    with LocalNode.open(home) as node:
        assert node.me == KeyFile.load(home.key_path).public


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_a_key_file_fixed_with_chmod_is_accepted(home: Home, mode: int) -> None:
    public = KeyFile.load(home.key_path).public
    home.key_path.chmod(0o644)
    with pytest.raises(UnsafePermissions):
        LocalNode.open(home)
    home.key_path.chmod(mode)
    with LocalNode.open(home) as node:
        assert node.me == public
        node.post("back in business")


# --- the data directory --------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o710, 0o770, 0o777], ids=oct)
def test_a_data_directory_others_can_reach_is_refused_with_the_fix(home: Home, mode: int) -> None:
    home.path.chmod(mode)
    with pytest.raises(UnsafePermissions) as raised:
        LocalNode.open(home)
    message = str(raised.value)
    assert f"the data directory {home.path} is open to other users" in message
    assert f"chmod 700 {home.path}" in message
    home.path.chmod(0o700)
    with LocalNode.open(home):
        pass


def test_init_refuses_an_existing_open_directory_and_writes_no_key(tmp_path: Path) -> None:
    shared = Home(tmp_path / "shared")
    shared.path.mkdir(mode=0o755)
    shared.path.chmod(0o755)
    with pytest.raises(UnsafePermissions, match=re.escape(f"chmod 700 {shared.path}")):
        LocalNode.init(shared)
    assert not shared.key_path.exists()
    # create() leaves an existing directory's mode alone; the check judges it.
    assert mode_of(shared.path) == 0o755


def test_a_missing_directory_still_says_how_to_create_an_identity(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="torv init") as raised:
        LocalNode.open(Home(tmp_path / "nowhere"))
    assert not isinstance(raised.value, UnsafePermissions)


# --- creation, whatever the umask ----------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277], ids=oct)
def test_created_directory_and_key_are_private_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    home = Home(tmp_path / "torv")
    with umask(mask):
        LocalNode.init(home, passphrase="correct horse" if mask else None)
    assert mode_of(home.path) == 0o700
    assert mode_of(home.key_path) == 0o600
    # No temporary file of the key is left behind.
    assert sorted(path.name for path in home.path.iterdir()) == ["config.toml", "secret.key"]
    with LocalNode.open(home):
        pass


@pytest.mark.trio
async def test_the_control_socket_is_0600_even_under_umask_0(home: Home) -> None:
    with trio.fail_after(30), umask(0):
        async with trio.open_nursery() as nursery:
            # The server only uses the node when a client calls a method.
            path = await nursery.start(serve_control, cast(Any, None), home)
            assert path == home.path / CONTROL_SOCKET
            assert stat.S_ISSOCK(path.stat().st_mode)
            assert mode_of(path) == 0o600
            nursery.cancel_scope.cancel()
    assert not (home.path / CONTROL_SOCKET).exists()


@pytest.mark.trio
async def test_a_client_does_not_trust_a_socket_in_an_open_directory(home: Home) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, cast(Any, None), home)
            home.path.chmod(0o757)
            try:
                with pytest.raises(UnsafePermissions, match=re.escape(f"chmod 700 {home.path}")):
                    await trio.to_thread.run_sync(ControlClient.connect, home)
            finally:
                home.path.chmod(0o700)
            client = await trio.to_thread.run_sync(ControlClient.connect, home)
            assert client is not None
            client.close()
            nursery.cancel_scope.cancel()


# --- the command line ------------------------------------------------------------


def torv(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``torv`` on ``home``; stdin closed, so nothing is asked."""
    return subprocess.run(
        [str(TORV), *args, "--data-dir", str(home.path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a command refused cleanly (status 1, no traceback)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("torv: error: ")
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [("id",), ("timeline",), ("post", "hello"), ("run", "--listen", "127.0.0.1:0")],
    ids=lambda command: command[0],
)
def test_the_cli_refuses_a_readable_key_with_the_fix(home: Home, command: tuple[str, ...]) -> None:
    home.key_path.chmod(0o644)
    line = refused(torv(home, *command))
    assert f"the key file {home.key_path} is open to other users (mode 0644)" in line
    assert f"chmod 600 {home.key_path}" in line


@pytest.mark.parametrize(
    "command",
    [
        ("id",),
        ("run", "--listen", "127.0.0.1:0"),
        ("ui", "--attach"),
        ("init",),
        ("algorithms",),
    ],
    ids=lambda command: command[0],
)
def test_the_cli_refuses_an_open_data_directory_with_the_fix(
    home: Home, command: tuple[str, ...]
) -> None:
    if command == ("init",):
        home.key_path.unlink()
    home.path.chmod(0o755)
    line = refused(torv(home, *command))
    assert f"the data directory {home.path} is open to other users (mode 0755)" in line
    assert f"chmod 700 {home.path}" in line
    assert not (home.path / CONTROL_SOCKET).exists()


def test_the_cli_works_again_once_fixed(home: Home) -> None:
    home.key_path.chmod(0o640)
    refused(torv(home, "id"))
    home.key_path.chmod(0o600)
    result = torv(home, "id")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("torv1")


def test_algorithm_files_do_not_run_from_an_open_data_directory(home: Home) -> None:
    folder = home.path / "algorithms"
    folder.mkdir(mode=0o700)
    script = folder / "marker.py"
    script.write_text(
        "from pathlib import Path\n"
        "Path(__file__).with_suffix('.ran').touch()\n"
        "def rank(timeline, limit):\n"
        "    return []\n",
        encoding="utf-8",
    )
    script.chmod(0o600)
    home.path.chmod(0o755)
    refused(torv(home, "algorithms"))
    assert not script.with_suffix(".ran").exists()
    home.path.chmod(0o700)
    result = torv(home, "algorithms")
    assert result.returncode == 0, result.stderr
    assert script.with_suffix(".ran").exists()  # so the check above could have seen it
