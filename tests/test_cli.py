"""The ``torv`` command line, driven through the installed console script.

Every test runs the real ``torv`` in a subprocess with ``--data-dir`` under
``tmp_path`` and ``$TORV_HOME`` pointing into ``tmp_path`` too, so nothing
touches the real home directory. stdin is closed, so no prompt is shown.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

from node import Home, LocalNode, feed_id_from_text, feed_id_to_text

TORV = Path(sys.executable).parent / "torv"
FEED_ID = re.compile(r"\btorv1[a-z2-7]{55}\b")


class Run(Protocol):
    def __call__(
        self,
        *args: str,
        data_dir: str | None = "a",
        input: str | None = None,
        stdout: IO[bytes] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Run ``torv ARGS --data-dir tmp_path/DATA_DIR`` and return the finished process.

    ``data_dir=None`` leaves ``--data-dir`` out; ``stdout`` sends the output
    to a binary file instead of capturing it.
    """
    env = {
        **os.environ,
        "TORV_HOME": str(tmp_path / "torv-home"),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }

    def run(
        *args: str,
        data_dir: str | None = "a",
        input: str | None = None,
        stdout: IO[bytes] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(TORV), *args]
        if data_dir is not None:
            argv += ["--data-dir", str(tmp_path / data_dir)]
        if stdout is not None:
            finished = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=60,
                check=False,
            )
            return subprocess.CompletedProcess(
                argv, finished.returncode, "", finished.stderr.decode("utf-8")
            )
        return subprocess.run(
            argv,
            env=env,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one stderr line of a command that must have failed cleanly."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("torv: ")
    return lines[0]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every line of ``stdout``, each of which must be one JSON object."""
    objects = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(obj, dict) for obj in objects)
    return objects


def one_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    (obj,) = json_lines(ok(result))
    return obj


def init(run: Run, data_dir: str | None = "a", *args: str) -> str:
    """Create an identity with ``torv init``; return its feed id."""
    created = one_json(run("init", "--json", *args, data_dir=data_dir))
    feed = created["feed"]
    assert isinstance(feed, str)
    return feed


def identity(path: Path, *posts: str) -> tuple[str, list[str]]:
    """Set up an identity with some posts in-process (cheaper than the CLI).

    Returns the feed id and the posts' entry ids, as the CLI prints them.
    """
    LocalNode.init(Home(path))
    with LocalNode.open(Home(path)) as node:
        ids = [node.post(text).id.hex() for text in posts]
        return feed_id_to_text(node.me), ids


# --- identity ---------------------------------------------------------------------


def test_init_and_id(run: Run, tmp_path: Path) -> None:
    out = ok(run("init"))
    feeds = FEED_ID.findall(out)
    assert len(feeds) == 1
    feed = feeds[0]
    key_path = tmp_path / "a" / "secret.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = key_path.read_bytes()

    line = error(run("init"))
    assert line.startswith("torv: error:")
    assert "already holds an identity" in line
    assert key_path.read_bytes() == key

    assert ok(run("id")) == feed + "\n"
    info = one_json(run("id", "--json"))
    assert info == {
        "feed": feed,
        "short": "@" + feed[5:13],
        "name": None,
        "entries": 0,
        "encrypted": False,
        "data_dir": str(tmp_path / "a"),
    }

    assert "torv init" in error(run("id", data_dir="nobody"))
    assert not (tmp_path / "torv-home").exists()


def test_data_dir_from_the_environment_and_global_options(run: Run, tmp_path: Path) -> None:
    # Without --data-dir, $TORV_HOME is the data directory.
    feed = init(run, None)
    assert (tmp_path / "torv-home" / "secret.key").exists()
    # Options given before the command count as much as after it.
    elsewhere = str(tmp_path / "elsewhere")
    other = one_json(run("--data-dir", elsewhere, "--json", "init", data_dir=None))["feed"]
    assert other != feed
    assert (tmp_path / "elsewhere" / "secret.key").exists()
    info = one_json(run("--json", "--data-dir", elsewhere, "id", data_dir=None))
    assert info["feed"] == other


def test_passphrase_file(run: Run, tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("s3cret words\n", encoding="utf-8")
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n", encoding="utf-8")
    created = one_json(run("init", "--passphrase-file", str(passphrase), "--json"))
    assert created["encrypted"] is True
    assert "s3cret" not in (tmp_path / "a" / "secret.key").read_text()

    ok(run("post", "locked away", "--passphrase-file", str(passphrase)))
    line = error(run("post", "no passphrase"))
    assert "encrypted" in line
    assert "--passphrase-file" in line
    assert "wrong passphrase" in error(run("post", "x", "--passphrase-file", str(wrong)))
    # Reading needs no passphrase; only the first post was written.
    posts = json_lines(ok(run("timeline", "--json")))
    assert [post["text"] for post in posts] == ["locked away"]


# --- writing ----------------------------------------------------------------------


def test_post_reply_content_warning_and_thread(run: Run, tmp_path: Path) -> None:
    feed, _ = identity(tmp_path / "a")
    root = one_json(run("post", "Hello #Torv world", "--json"))
    assert root["kind"] == "post"
    assert root["author"] == feed
    assert root["author_name"] == "you"
    assert root["text"] == "Hello #Torv world"
    assert root["tags"] == ["torv"]
    assert (root["reply_to"], root["root"], root["seq"]) == (None, None, 1)

    reply = one_json(run("post", "a reply", "--reply", root["id"][:10], "--json"))
    assert (reply["reply_to"], reply["root"]) == (root["id"], root["id"])
    deeper = one_json(
        run("post", "-", "--reply", reply["id"], "--cw", "spoilers", "--json", input="boo\n")
    )
    assert (deeper["text"], deeper["cw"]) == ("boo", "spoilers")
    assert (deeper["reply_to"], deeper["root"]) == (reply["id"], root["id"])

    timeline = ok(run("timeline"))
    assert "⚠ spoilers" in timeline
    assert "boo" not in timeline
    assert "Hello #Torv world" in timeline
    assert "boo" in ok(run("timeline", "--show-cw"))

    thread = json_lines(ok(run("thread", deeper["id"][:12], "--json")))
    assert [(item["id"], item["depth"]) for item in thread] == [
        (root["id"], 0),
        (reply["id"], 1),
        (deeper["id"], 2),
    ]
    text = ok(run("thread", root["id"][:8]))
    assert re.search(r"^you  ·.*" + root["id"][:10], text, re.MULTILINE)
    assert re.search(r"^  you  ·.*" + reply["id"][:10], text, re.MULTILINE)
    assert re.search(r"^    you  ·.*" + deeper["id"][:10], text, re.MULTILINE)


def test_react_repost_and_timeline_json(run: Run, tmp_path: Path) -> None:
    _, (post_id,) = identity(tmp_path / "a", "react to me")
    like = one_json(run("react", post_id[:8], "--json"))
    assert (like["kind"], like["target"], like["emoji"]) == ("react", post_id, "♥")
    party = one_json(run("react", post_id, "🎉", "--json"))
    assert party["emoji"] == "🎉"
    repost = one_json(run("repost", post_id, "--json"))
    assert (repost["kind"], repost["target"]) == ("repost", post_id)

    timeline = json_lines(ok(run("timeline", "--json")))
    assert [(item["kind"], item["id"]) for item in timeline] == [
        ("repost", repost["id"]),
        ("post", post_id),
    ]
    for item in timeline:
        assert {"id", "author", "author_name", "kind", "seq", "timestamp"} <= item.keys()
    assert timeline[1]["text"] == "react to me"
    assert timeline[1]["reactions"] == {"🎉": 1}  # one per author: the latest

    assert len(json_lines(ok(run("timeline", "--json", "--limit", "1")))) == 1
    (tmp_path / "a" / "config.toml").write_text("[timeline]\nlimit = 1\n", encoding="utf-8")
    assert [item["kind"] for item in json_lines(ok(run("timeline", "--json")))] == ["repost"]


def test_follow_block_and_petnames_of_another_identity(run: Run, tmp_path: Path) -> None:
    LocalNode.init(Home(tmp_path / "b"))
    with LocalNode.open(Home(tmp_path / "b")) as b:
        b.set_profile(name="Bee")
        b.post("hello from b")
    feed_b = ok(run("id", data_dir="b")).strip()
    log_b = tmp_path / "b.torv"
    ok(run("export", "-o", str(log_b), data_dir="b"))

    identity(tmp_path / "a")
    assert one_json(run("import", str(log_b), "--json"))["stored"] == 2
    follow = one_json(run("follow", feed_b, "--json"))
    assert (follow["kind"], follow["feed"]) == ("follow", feed_b)
    assert one_json(run("follow", feed_b, "--json")) == {"feed": feed_b, "changed": False}
    timeline = ok(run("timeline"))
    assert "hello from b" in timeline
    assert "~Bee  ·" in timeline

    assert ok(run("petname", feed_b, "bee")) == f"{feed_b} is now shown as bee\n"
    assert ok(run("unfollow", "bee")).startswith("unfollowed bee:")
    assert ok(run("timeline")) == "(nothing here yet)\n"
    ok(run("block", "@bee"))
    ok(run("follow", "bee"))
    assert ok(run("timeline", "--json")) == ""  # followed, but blocked
    ok(run("unblock", feed_b))
    # The block purged b's entries; they come back like any feed's would.
    assert ok(run("timeline")) == "(nothing here yet)\n"
    assert one_json(run("import", str(log_b), "--json"))["stored"] == 2
    timeline = ok(run("timeline"))
    assert "hello from b" in timeline
    assert "bee  ·" in timeline

    assert "cannot follow yourself" in error(run("follow", "me"))
    assert "is neither a feed id" in error(run("block", "nobody"))
    feed = json_lines(ok(run("feed", "bee", "--json")))
    assert [item["kind"] for item in feed] == ["post", "profile"]


def test_profile_and_delete(run: Run, tmp_path: Path) -> None:
    _, (oops, keep) = identity(tmp_path / "a", "oops", "keep")
    profile = one_json(run("profile", "--name", "Ann", "--bio", "hi there", "--json"))
    assert (profile["kind"], profile["name"], profile["bio"]) == ("profile", "Ann", "hi there")
    assert one_json(run("id", "--json"))["name"] == "Ann"

    deleted = one_json(run("delete", oops[:8], "--json"))
    assert (deleted["kind"], deleted["target"]) == ("delete", oops)
    assert [item["id"] for item in json_lines(ok(run("timeline", "--json")))] == [keep]
    assert "already deleted" in error(run("delete", oops))
    feed = json_lines(ok(run("feed", "me", "--json")))
    assert [(item["kind"], item["deleted"]) for item in feed] == [
        ("delete", False),
        ("profile", False),
        ("post", False),
        ("post", True),
    ]
    assert ok(run("verify")) == "ok: 4 entries in 1 feeds verify\n"


# --- moving logs --------------------------------------------------------------------


def test_export_and_import(run: Run, tmp_path: Path) -> None:
    feed_w, _ = identity(tmp_path / "w", "one", "two")
    to_file = tmp_path / "w.torv"
    exported = run("export", "-o", str(to_file), data_dir="w")
    ok(exported)
    assert exported.stderr == "exported 2 entries\n"
    assert "already exists" in error(run("export", "-o", str(to_file), data_dir="w"))
    redirected = tmp_path / "redirected.torv"
    with redirected.open("wb") as out:
        ok(run("export", data_dir="w", stdout=out))
    good = to_file.read_bytes()
    assert good.startswith(b"torv-export-1\n")
    assert redirected.read_bytes() == good
    controller, terminal = os.openpty()
    with closing(os.fdopen(controller, "rb", buffering=0)), os.fdopen(terminal, "wb") as tty:
        assert "redirect it" in error(run("export", data_dir="w", stdout=tty))

    identity(tmp_path / "a")
    ok(run("follow", feed_w))
    damaged = {
        "truncated": good[:-10],
        "tampered": good[:60] + bytes([good[60] ^ 0x01]) + good[61:],
    }
    for name, data in damaged.items():
        path = tmp_path / f"{name}.torv"
        path.write_bytes(data)
        line = error(run("import", str(path)))
        assert line.startswith(f"torv: error: {path}: nothing imported: "), name
    # Nothing was stored: the followed feed still shows nothing.
    assert ok(run("timeline", "--json")) == ""

    assert one_json(run("import", str(redirected), "--json")) == {
        "stored": 2,
        "duplicates": 0,
        "forks": 0,
    }
    assert [item["text"] for item in json_lines(ok(run("timeline", "--json")))] == ["two", "one"]
    again = tmp_path / "again.torv"
    ok(run("export", feed_w, "-o", str(again)))
    assert again.read_bytes() == good


def test_verify_reports_a_corrupt_signature(run: Run, tmp_path: Path) -> None:
    feed, (_, second) = identity(tmp_path / "a", "one", "two")
    assert one_json(run("verify", "--json")) == {"ok": True, "entries": 2, "feeds": 1}

    with closing(sqlite3.connect(tmp_path / "a" / "store.db")) as db:
        entry_id = bytes.fromhex(second)
        (signature,) = db.execute(
            "SELECT signature FROM entries WHERE id = ?", (entry_id,)
        ).fetchone()
        damaged = bytes([signature[0] ^ 0x01]) + signature[1:]
        db.execute("UPDATE entries SET signature = ? WHERE id = ?", (damaged, entry_id))
        db.commit()

    line = error(run("verify"))
    assert line.startswith("torv: the store is damaged:")
    assert "seq 2" in line
    assert feed_id_from_text(feed).hex()[:16] in line
    debug = run("verify", "--debug")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == line


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [(), ("bogus",), ("timeline", "--limit", "0"), ("post",)],
    ids=["no-command", "unknown-command", "bad-limit", "missing-argument"],
)
def test_usage_errors_exit_2(run: Run, args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage: torv" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_errors_are_one_line_and_a_traceback_needs_debug(run: Run, tmp_path: Path) -> None:
    identity(tmp_path / "a")
    assert "not an entry id" in error(run("thread", "xyz"))
    assert "cannot read" in error(run("import", str(tmp_path)))
    debug = run("thread", "xyz", "--debug")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("torv: error:")


# --- demo ---------------------------------------------------------------------------


def test_demo_headless_runs_a_swarm_delivers_and_leaves_nothing_behind(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "TORV_HOME": str(tmp_path / "home")}
    argv = [str(TORV), "demo", "--headless", "--nodes", "4", "--seconds", "3", "--seed", "7"]
    finished = subprocess.run(
        [*argv, "--json"], env=env, capture_output=True, encoding="utf-8", timeout=120, check=False
    )
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert report["nodes"] == 4
    assert report["posts"] >= 1
    assert report["entries"] >= report["posts"] + 4  # every person posts once at the start
    assert 0 < report["delivered"] <= report["expected"]
    assert report["latency_p99"] >= report["latency_p50"] > 0
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "home").exists()

    text = subprocess.run(
        argv, env=env, capture_output=True, encoding="utf-8", timeout=120, check=False
    ).stdout
    assert "torv demo: 4 nodes on loopback" in text
    assert "delivered to followers:" in text


def test_demo_refuses_odd_sizes(run: Run) -> None:
    for args, message in [
        (("--nodes", "1"), "a demo has 2 to 64 nodes"),
        (("--seconds", "0"), "must be from 1 to 10000"),
    ]:
        result = run("demo", *args, data_dir=None)
        assert result.returncode == 2
        assert message in result.stderr
