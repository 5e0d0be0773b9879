"""Timeline algorithms against hand-built stores: known orderings and reasons;
the owner's own algorithms; broken ones fall back; moderation hides."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import algorithms
from node.algorithms import AlgorithmError, Item, Timeline
from node.home import Home
from node.local import LocalNode
from node.views import Views
from storage import Post, Profile, React, Repost
from storage.entry import Entry

HOUR = 3_600_000
NOW = 1_800_000_000_000


def key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


def feed(k: Ed25519PrivateKey) -> bytes:
    return k.public_key().public_bytes_raw()


ANA, BEN, CAL, DAN = key(1), key(2), key(3), key(4)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalNode]:
    home = Home(tmp_path / "me")
    LocalNode.init(home)
    with LocalNode.open(home) as opened:
        for k, name in ((ANA, "Ana"), (BEN, "Ben"), (CAL, "Cal"), (DAN, "Dan")):
            opened.store.append(k, Profile(name=name, bio=None), timestamp=NOW - 100 * HOUR)
        opened.follow(feed(ANA))
        opened.follow(feed(BEN))
        yield opened


def post(
    local: LocalNode, k: Ed25519PrivateKey, text: str, hours_ago: float, **kw: object
) -> Entry:
    tags = tuple(word[1:] for word in text.split() if word.startswith("#"))
    payload = Post(text=text, tags=tags, **kw)  # type: ignore[arg-type]
    return local.store.append(k, payload, timestamp=int(NOW - hours_ago * HOUR))


def react(local: LocalNode, k: Ed25519PrivateKey, target: Entry, hours_ago: float) -> None:
    payload = React(entry=target.id, author=target.author, emoji="♥")
    local.store.append(k, payload, timestamp=int(NOW - hours_ago * HOUR))


def repost(local: LocalNode, k: Ed25519PrivateKey, target: Entry, hours_ago: float) -> Entry:
    payload = Repost(entry=target.id, author=target.author)
    return local.store.append(k, payload, timestamp=int(NOW - hours_ago * HOUR))


def timeline(local: LocalNode) -> Timeline:
    return Timeline(local.store, local.me, NOW, local.display_name)


def ranked(local: LocalNode, name: str, limit: int = 50) -> list[tuple[str, str]]:
    items, error = algorithms.run(name, timeline(local), limit, local.home.path)
    assert error is None
    return [(_text(local, item), item.reason) for item in items]


def _text(local: LocalNode, item: Item) -> str:
    content = item.entry.entry.content
    if isinstance(content, Repost):
        original = local.store.get(content.entry).entry.content
        assert isinstance(original, Post)
        return f"repost of {original.text}"
    assert isinstance(content, Post)
    return content.text


def test_latest_is_you_and_your_follows_newest_first(local: LocalNode) -> None:
    first = post(local, ANA, "ana early", 5)
    post(local, CAL, "cal, not followed", 4)
    post(local, BEN, "ben", 3)
    local.store.append(local.signing_key(), Post(text="mine"), timestamp=NOW - 2 * HOUR)
    repost(local, BEN, first, 1)
    assert ranked(local, "latest") == [
        ("repost of ana early", "~Ben reposted this (you follow them)"),
        ("mine", "your post"),
        ("ben", "you follow ~Ben"),
        ("ana early", "you follow ~Ana"),
    ]
    assert len(ranked(local, "latest", limit=2)) == 2


def test_popular_scores_follows_likes_and_reposts_with_a_half_life(local: LocalNode) -> None:
    fresh = post(local, CAL, "fresh, liked by two", 1)
    old = post(local, DAN, "old, reposted once", 13)
    stale = post(local, DAN, "liked long ago", 80)
    unseen = post(local, CAL, "liked by strangers only", 1)
    # Each log in time order (a log's timestamps never go backwards).
    react(local, ANA, stale, 79)  # outside the three-day window
    repost(local, ANA, old, 2)
    react(local, ANA, fresh, 0.5)
    react(local, BEN, fresh, 0.5)
    react(local, CAL, unseen, 0.5)  # Cal is not followed
    react(local, DAN, unseen, 0.5)
    items, _ = algorithms.run("popular", timeline(local), 10)
    assert [(_text(local, item), item.reason) for item in items] == [
        ("fresh, liked by two", "liked by 2 people you follow"),
        ("old, reposted once", "reposted by ~Ana"),
    ]
    # The published formula: (likes + 2 * reposts) * 0.5 ** (age_hours / 12).
    assert items[0].score == pytest.approx(2 * 0.5 ** (1 / 12))
    assert items[1].score == pytest.approx(2 * 0.5 ** (13 / 12))


def test_square_mentions_and_threads(local: LocalNode) -> None:
    me = local.signing_key()
    mine = local.store.append(me, Post(text="my thread"), timestamp=NOW - 10 * HOUR)
    post(local, CAL, "stranger", 9)
    post(local, ANA, "hello @me", 8, mentions=(local.me,))
    post(local, DAN, "dan answers", 7, root=mine.id, parent=mine.id, mentions=(local.me,))
    theirs = post(local, CAL, "cal's thread", 6)
    local.store.append(
        me, Post(text="me in cal's", root=theirs.id, parent=theirs.id), timestamp=NOW - 5 * HOUR
    )
    post(local, BEN, "ben in cal's", 4, root=theirs.id, parent=theirs.id)
    square = ranked(local, "square")
    assert square[0] == ("ben in cal's", "you follow ~Ben")
    assert ("stranger", "seen on the square") in square
    assert ("my thread", "your post") in square
    assert ranked(local, "mentions") == [
        ("dan answers", "~Dan replied to you"),
        ("hello @me", "~Ana mentioned you"),
    ]
    assert ranked(local, "threads") == [
        ("ben in cal's", "in a thread you joined"),
        ("cal's thread", "~Cal started a thread you joined"),
        ("dan answers", "in a thread you started"),
    ]


def _write(local: LocalNode, name: str, source: str) -> Path:
    folder = local.home.path / "algorithms"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    path.chmod(0o600)
    return path


SHORTEST = '''
"""Short posts first."""
from node.algorithms import Item, Timeline

def rank(timeline: Timeline, limit: int) -> list[Item]:
    posts = timeline.posts_by(timeline.following() | {timeline.me}, 200)
    posts.sort(key=lambda stored: len(stored.entry.content.text))
    return [Item(stored, "short and sweet") for stored in posts[:limit]]
'''


def test_an_algorithm_of_your_own_is_listed_selected_and_used(local: LocalNode) -> None:
    post(local, ANA, "a long post from ana", 3)
    post(local, BEN, "short", 2)
    _write(local, "shortest", SHORTEST)
    listed = algorithms.available(local.home.path)
    names = [found.name for found in listed if isinstance(found, algorithms.Algorithm)]
    assert names == [*algorithms.BUILT_IN, "shortest"]
    assert ranked(local, "shortest") == [
        ("short", "short and sweet"),
        ("a long post from ana", "short and sweet"),
    ]
    views = Views(local)
    views.set_algorithm("shortest")
    assert local.home.load_config().algorithm == "shortest"
    home = views.home()
    assert [(view.text, view.reason) for view in home] == [
        ("short", "short and sweet"),
        ("a long post from ana", "short and sweet"),
    ]
    assert views.settings(seeds=(), network_key=bytes(32), hops=1, square=False).algorithm == (
        "shortest"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def rank(:\n", "does not load: SyntaxError"),
        ("x = 1\n", "has no rank(timeline, limit) function"),
        ("def rank(timeline, limit):\n    return 1 / 0\n", "failed: ZeroDivisionError"),
        ("def rank(timeline, limit):\n    return ['not an item']\n", "did not return a list"),
        ("import sys\nsys.exit(3)\n", "does not load: SystemExit"),
    ],
)
def test_a_broken_algorithm_reports_its_error_and_latest_ranks(
    local: LocalNode, source: str, message: str
) -> None:
    post(local, ANA, "still here", 1)
    _write(local, "broken", source)
    items, error = algorithms.run("broken", timeline(local), 10, local.home.path)
    assert error is not None
    assert message in str(error)
    assert [_text(local, item) for item in items] == ["still here"]


def test_selecting_a_broken_algorithm_changes_nothing(local: LocalNode) -> None:
    _write(local, "broken", "def rank(:\n")
    views = Views(local)
    with pytest.raises(AlgorithmError, match="SyntaxError"):
        views.set_algorithm("broken")
    with pytest.raises(AlgorithmError, match="no algorithm 'nope'"):
        views.set_algorithm("nope")
    settings = views.settings(seeds=(), network_key=bytes(32), hops=1, square=False)
    assert settings.algorithm == "latest"
    assert [name for name, _ in settings.broken_algorithms] == ["broken"]


def test_a_file_others_may_change_is_refused(local: LocalNode) -> None:
    path = _write(local, "shared", SHORTEST)
    os.chmod(path, 0o666)
    with pytest.raises(AlgorithmError, match="may be changed by other users"):
        algorithms.load("shared", local.home.path)


def test_a_failing_choice_falls_back_on_the_home_screen(local: LocalNode) -> None:
    post(local, ANA, "shown anyway", 1)
    path = _write(local, "flaky", SHORTEST)
    views = Views(local)
    views.set_algorithm("flaky")
    path.write_text("def rank(timeline, limit):\n    raise RuntimeError('oops')\n")
    path.chmod(0o600)
    assert [view.text for view in views.home()] == ["shown anyway"]
    assert "RuntimeError: oops" in (views.algorithm_error() or "")


def test_moderation_hides_muted_filtered_and_hidden_reposts(local: LocalNode) -> None:
    kept = post(local, ANA, "ana about bread", 6)
    post(local, ANA, "ana about #crypto", 5)
    post(local, BEN, "ben spoils the FILM", 4)
    repost(local, BEN, kept, 3)
    views = Views(local)
    assert len(views.home()) == 4
    views.set_filters(["film"], ["#crypto"])
    assert [view.text for view in views.home()] == ["ana about bread", "ana about bread"]
    views.set_reposts_hidden(feed(BEN), True)
    assert [(view.text, view.reposted_by) for view in views.home()] == [("ana about bread", None)]
    views.set_muted(feed(ANA), True)
    assert views.home() == []
    assert views.profile(feed(ANA)).muted
    views.set_muted(feed(ANA), False)
    views.set_filters([], [])
    assert len(views.home()) == 3
    config = local.home.load_config()
    assert config.mute == frozenset()
    assert config.hide_reposts == {feed(BEN)}


def test_hidden_and_deleted_posts_leave_threads_unless_replies_need_them(
    local: LocalNode,
) -> None:
    root = post(local, ANA, "root", 5)
    muted = post(local, CAL, "cal replies", 4, root=root.id, parent=root.id)
    post(local, BEN, "ben answers cal", 3, root=root.id, parent=muted.id)
    post(local, CAL, "cal again, a leaf", 2, root=root.id, parent=root.id)
    views = Views(local)
    views.set_muted(feed(CAL), True)
    thread = views.thread(root.id)
    assert [(view.text, view.hidden, view.depth) for view in thread] == [
        ("root", False, 0),
        ("", True, 1),
        ("ben answers cal", False, 2),
    ]
    assert thread[1].reason == "muted"


def test_ranked_pages_continue_after_the_last_item(local: LocalNode) -> None:
    for n in range(120):
        post(local, ANA, f"post {n}", 200 - n)
    views = Views(local)
    first = views.home(limit=50)
    second = views.home(limit=50, before=first[-1].cursor)
    third = views.home(limit=50, before=second[-1].cursor)
    texts = [view.text for view in [*first, *second, *third]]
    assert texts == [f"post {n}" for n in range(119, -1, -1)]


def test_the_example_in_the_docs_works(local: LocalNode) -> None:
    text = (Path(__file__).parents[2] / "docs" / "algorithms.md").read_text(encoding="utf-8")
    source = text.split('```python\n"""The people you follow, one post each')[1]
    _write(local, "quiet", '"""The people you follow, one post each' + source.split("```")[0])
    for n in range(3):
        post(local, ANA, f"ana {n}", 5 - n)
    post(local, BEN, "ben yesterday", 30)  # more than a day old: left out
    post(local, BEN, "ben once", 4)
    items, error = algorithms.run("quiet", timeline(local), 10, local.home.path)
    assert error is None
    assert [(_text(local, item), item.reason) for item in items] == [
        ("ben once", "~Ben posted 1 time today"),
        ("ana 2", "~Ana posted 3 times today"),
        ("ana 1", "~Ana posted 3 times today"),
        ("ana 0", "~Ana posted 3 times today"),
    ]
