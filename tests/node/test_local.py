"""The owner's offline node (node/local.py)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import (
    BadExportFile,
    Home,
    IdentityError,
    InvalidArgument,
    LocalNode,
    NotFound,
    feed_id_to_text,
    short_feed_id,
)
from storage import Block, Delete, Entry, Follow, Post, Profile, React, Repost, StoredEntry

NodeFactory = Callable[..., LocalNode]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[NodeFactory]:
    """Create and open nodes in ``tmp_path/<name>``; all are closed afterwards."""
    opened: list[LocalNode] = []

    def make(name: str = "me", *, petnames: dict[bytes, str] | None = None) -> LocalNode:
        home = Home(tmp_path / name)
        LocalNode.init(home)
        for feed, petname in (petnames or {}).items():
            home.add_petname(feed, petname)
        node = LocalNode.open(home)
        opened.append(node)
        return node

    yield make
    for node in opened:
        node.close()


@pytest.fixture
def node(make_node: NodeFactory) -> LocalNode:
    return make_node("me")


@pytest.fixture
def other(make_node: NodeFactory) -> LocalNode:
    return make_node("other")


def share(source: LocalNode, *targets: LocalNode) -> None:
    """Give ``targets`` every entry of ``source``'s log they lack."""
    entries = [stored.entry for stored in source.store.log(source.me)]
    for target in targets:
        report = target.store.ingest(entries)
        assert report.rejected == ()


def post_of(stored: StoredEntry) -> Post:
    content = stored.entry.content
    assert isinstance(content, Post)
    return content


def ids(entries: list[StoredEntry]) -> list[bytes]:
    return [stored.entry.id for stored in entries]


# --- opening --------------------------------------------------------------------


def test_init_then_open(tmp_path: Path) -> None:
    home = Home(tmp_path / "torv")
    key_file = LocalNode.init(home)
    assert home.config_path.exists()
    with LocalNode.open(home) as node:
        assert node.me == key_file.public
        assert node.store.count() == 0
        assert node.timeline() == []
    assert home.store_path.exists()


def test_init_refuses_a_second_identity(tmp_path: Path) -> None:
    home = Home(tmp_path)
    first = LocalNode.init(home)
    with pytest.raises(IdentityError):
        LocalNode.init(home)
    with LocalNode.open(home) as node:
        assert node.me == first.public


def test_open_without_an_identity(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="torv init"):
        LocalNode.open(Home(tmp_path))
    assert not (tmp_path / "store.db").exists()


def test_passphrase_is_asked_once_and_only_to_sign(tmp_path: Path) -> None:
    home = Home(tmp_path)
    LocalNode.init(home, passphrase="open sesame")
    asked: list[int] = []

    def source() -> str:
        asked.append(1)
        return "open sesame"

    with LocalNode.open(home, passphrase=source) as node:
        assert node.timeline() == []
        assert asked == []
        node.post("one")
        node.post("two")
        assert asked == [1]
    with LocalNode.open(home) as node, pytest.raises(IdentityError, match="passphrase-file"):
        node.post("no passphrase")
    with LocalNode.open(home, passphrase=lambda: "wrong") as node:
        with pytest.raises(IdentityError, match="wrong passphrase"):
            node.post("wrong passphrase")
        assert node.store.count() == 2


# --- posting --------------------------------------------------------------------


def test_post_records_tags(node: LocalNode) -> None:
    entry = node.post(
        "Bread! #Baking #baking, #rye. (#Sourdough) mid#word ##double # #!!! #Ünïcode"
    )
    content = node.store.get(entry.id).entry.content
    assert isinstance(content, Post)
    assert content.tags == ("baking", "rye", "sourdough", "ünïcode")
    assert node.store.tagged("rye")[0].entry.id == entry.id
    assert node.store.tagged("Baking") == []


def test_post_without_tags_or_mentions(node: LocalNode) -> None:
    entry = node.post("plain words, mail me at someone@example.com")
    content = entry.content
    assert isinstance(content, Post)
    assert (content.tags, content.mentions, content.root, content.cw) == ((), (), None, None)
    assert entry.seq == 1


def test_post_records_mentions(make_node: NodeFactory) -> None:
    alice, bob, carol = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    node = make_node("me", petnames={alice: "alice", bob: "bob.b"})
    bad = feed_id_to_text(carol)[:-1] + ("a" if feed_id_to_text(carol)[-1] != "a" else "b")
    entry = node.post(
        f"hi @alice, @{feed_id_to_text(carol)}! and @bob.b. "
        f"also @nobody, @{bad}, me@alice and @alice again"
    )
    content = entry.content
    assert isinstance(content, Post)
    assert content.mentions == (alice, carol, bob)
    assert [s.entry.id for s in node.store.mentions(carol)] == [entry.id]


def test_post_with_a_content_warning(node: LocalNode) -> None:
    content = node.post("the ending", cw="spoilers").content
    assert isinstance(content, Post)
    assert content.cw == "spoilers"
    empty = node.post("no warning", cw="").content
    assert isinstance(empty, Post)
    assert empty.cw is None


@pytest.mark.parametrize(
    ("text", "cw"), [("", None), ("x" * 4097, None), ("ok", "c" * 257), ("😀" * 4096, None)]
)
def test_a_post_the_format_refuses_writes_nothing(
    node: LocalNode, text: str, cw: str | None
) -> None:
    with pytest.raises(InvalidArgument):
        node.post(text, cw=cw)
    assert node.store.count() == 0
    assert node.post("fine").seq == 1


def test_replies_name_the_root_and_parent(node: LocalNode, other: LocalNode) -> None:
    root = other.post("a question")
    share(other, node)
    first = node.post("an answer", reply_to=root.id)
    share(node, other)
    second = other.post("thanks", reply_to=first.id)
    share(other, node)
    third = node.post("you're welcome", reply_to=second.id)
    own = node.post("and one more thing", reply_to=third.id)

    def content(entry: Entry) -> Post:
        assert isinstance(entry.content, Post)
        return entry.content

    assert (content(first).root, content(first).parent) == (root.id, root.id)
    assert (content(second).root, content(second).parent) == (root.id, first.id)
    assert (content(third).root, content(third).parent) == (root.id, second.id)
    assert content(first).mentions == (other.me,)
    assert content(second).mentions == (node.me,)
    assert content(own).mentions == ()  # a reply to yourself mentions nobody


def test_reply_mentions_the_parent_author_once(node: LocalNode, other: LocalNode) -> None:
    parent = other.post("hello")
    share(other, node)
    reply = node.post(f"hi @{feed_id_to_text(other.me)}", reply_to=parent.id)
    assert isinstance(reply.content, Post)
    assert reply.content.mentions == (other.me,)


def test_reply_to_something_that_is_not_a_post(node: LocalNode, other: LocalNode) -> None:
    follow = node.follow(other.me)
    assert follow is not None
    with pytest.raises(InvalidArgument, match="only posts"):
        node.post("?", reply_to=follow.id)
    with pytest.raises(NotFound):
        node.post("?", reply_to=bytes(32))
    assert node.store.count() == 1


def test_react(node: LocalNode, other: LocalNode) -> None:
    post = other.post("nice weather")
    share(other, node)
    like = node.react(post.id)
    party = node.react(post.id, "🎉")
    assert like.content == React(entry=post.id, author=other.me, emoji="♥")
    assert party.content == React(entry=post.id, author=other.me, emoji="🎉")
    assert node.store.reactions(post.id) == {"🎉": 1}  # one per author: the latest
    with pytest.raises(NotFound):
        node.react(bytes(32))


def test_repost(node: LocalNode, other: LocalNode) -> None:
    post = other.post("worth sharing")
    share(other, node)
    repost = node.repost(post.id)
    assert repost.content == Repost(entry=post.id, author=other.me)
    assert ids(node.timeline()) == [repost.id]  # other is not followed
    like = node.react(post.id)
    with pytest.raises(InvalidArgument, match="only posts"):
        node.repost(like.id)


def test_follow_and_unfollow(node: LocalNode, other: LocalNode) -> None:
    follow = node.follow(other.me)
    assert follow is not None
    assert follow.content == Follow(feed=other.me)
    assert node.follow(other.me) is None
    assert node.store.following(node.me) == [other.me]
    assert node.unfollow(other.me) is not None
    assert node.unfollow(other.me) is None
    assert node.store.following(node.me) == []
    assert node.follow(other.me) is not None
    assert node.store.latest_seq(node.me) == 3


def test_follow_and_block_of_yourself_are_refused(node: LocalNode) -> None:
    with pytest.raises(InvalidArgument, match="cannot follow yourself"):
        node.follow(node.me)
    with pytest.raises(InvalidArgument, match="cannot block yourself"):
        node.block(node.me)
    assert node.store.count() == 0


def test_block_and_unblock(node: LocalNode, other: LocalNode) -> None:
    block = node.block(other.me)
    assert block is not None
    assert block.content == Block(feed=other.me)
    assert node.block(other.me) is None
    assert node.store.blocking(node.me) == [other.me]
    assert node.unblock(other.me) is not None
    assert node.unblock(other.me) is None
    assert node.store.blocking(node.me) == []


def test_set_profile(node: LocalNode, other: LocalNode) -> None:
    assert node.set_profile(name="Me", bio="hello").content == Profile(name="Me", bio="hello")
    info = node.store.feed_info(node.me)
    assert info is not None
    assert (info.name, info.bio) == ("Me", "hello")
    node.set_profile(bio="changed")
    info = node.store.feed_info(node.me)
    assert info is not None
    assert (info.name, info.bio) == ("Me", "changed")
    with pytest.raises(InvalidArgument):
        node.set_profile()


def test_display_names(make_node: NodeFactory) -> None:
    other = make_node("other")
    stranger = make_node("stranger")
    node = make_node("me", petnames={stranger.me: "Stan"})
    assert node.display_name(node.me) == "you"
    assert node.display_name(other.me) == short_feed_id(other.me)
    other.set_profile(name="Olga")
    stranger.set_profile(name="The Real Stan")
    share(other, node)
    share(stranger, node)
    assert node.display_name(other.me) == "~Olga"
    assert node.display_name(stranger.me) == "Stan"  # a petname beats a self-chosen name


def test_resolve_feed(make_node: NodeFactory) -> None:
    other = make_node("other")
    node = make_node("me", petnames={other.me: "olga"})
    for text in ("me", "self", "@me"):
        assert node.resolve_feed(text) == node.me
    assert node.resolve_feed(feed_id_to_text(other.me)) == other.me
    assert node.resolve_feed(f" @{feed_id_to_text(other.me)} ") == other.me
    assert node.resolve_feed("olga") == other.me
    assert node.resolve_feed("@olga") == other.me
    with pytest.raises(InvalidArgument, match="neither a feed id"):
        node.resolve_feed("nobody")
    with pytest.raises(InvalidArgument):
        node.resolve_feed(feed_id_to_text(other.me)[:-2])


def test_resolve_entry(node: LocalNode) -> None:
    entry = node.post("find me")
    assert node.resolve_entry(entry.id.hex()[:6]).entry.id == entry.id
    assert node.resolve_entry(entry.id.hex().upper()).entry.id == entry.id
    with pytest.raises(InvalidArgument):
        node.resolve_entry("abc")
    with pytest.raises(NotFound):
        node.resolve_entry(bytes(a ^ 0xFF for a in entry.id[:4]).hex())


# --- deleting -------------------------------------------------------------------


def test_delete_a_post(node: LocalNode) -> None:
    keep = node.post("keep me")
    gone = node.post("delete me #secret")
    delete = node.delete(gone.id)
    assert delete.content == Delete(entry=gone.id)
    stored = node.store.get(gone.id)
    assert stored.deleted
    assert stored.entry.content is None
    assert ids(node.timeline()) == [keep.id]
    assert node.store.tagged("secret") == []
    with pytest.raises(InvalidArgument, match="already deleted"):
        node.delete(gone.id)
    report = node.store.verify_all()
    assert report.entries == 3


def test_a_deleted_reply_leaves_its_thread(node: LocalNode) -> None:
    root = node.post("root")
    middle = node.post("middle", reply_to=root.id)
    leaf = node.post("leaf", reply_to=middle.id)
    node.delete(middle.id)
    thread = node.thread(root.id)
    # The leaf's parent is no longer shown: it hangs from the root.
    assert [(item.stored.entry.id, item.depth) for item in thread.items] == [
        (root.id, 0),
        (leaf.id, 1),
    ]
    assert node.store.verify_all().entries == 4


def test_delete_only_own_entries(node: LocalNode, other: LocalNode) -> None:
    theirs = other.post("mine, not yours")
    share(other, node)
    with pytest.raises(InvalidArgument, match="your own"):
        node.delete(theirs.id)
    assert not node.store.get(theirs.id).deleted
    assert node.store.latest_seq(node.me) == 0


def test_delete_of_a_follow(node: LocalNode, other: LocalNode) -> None:
    follow = node.follow(other.me)
    assert follow is not None
    node.delete(follow.id)
    assert node.store.get(follow.id).deleted
    node.store.verify_all()


# --- reading --------------------------------------------------------------------


def test_timeline_is_me_and_who_i_follow(make_node: NodeFactory) -> None:
    node = make_node("me")
    followed, unfollowed, blocked, stranger = (
        make_node(name) for name in ("followed", "unfollowed", "blocked", "stranger")
    )
    posts = {peer.me: peer.post("hello") for peer in (followed, unfollowed, blocked, stranger)}
    for peer in (followed, unfollowed, blocked, stranger):
        share(peer, node)
    mine = node.post("from me")
    node.follow(followed.me)
    node.follow(unfollowed.me)
    node.follow(blocked.me)
    node.unfollow(unfollowed.me)
    node.block(blocked.me)
    shown = ids(node.timeline())
    assert set(shown) == {mine.id, posts[followed.me].id}
    assert node.store.feed_info(blocked.me) is None  # the block purged the feed
    node.unblock(blocked.me)
    share(blocked, node)  # it comes back like any feed's entries would
    assert posts[blocked.me].id in ids(node.timeline())


def test_timeline_is_newest_first_and_limited(node: LocalNode) -> None:
    posts = [node.post(f"post {n}") for n in range(5)]
    newest_first = [entry.id for entry in reversed(posts)]
    assert ids(node.timeline()) == newest_first
    assert ids(node.timeline(limit=2)) == newest_first[:2]
    page = node.timeline(limit=2)
    assert ids(node.timeline(limit=2, before=page[-1].cursor)) == newest_first[2:4]


def test_timeline_shows_posts_and_reposts_only(node: LocalNode, other: LocalNode) -> None:
    post = other.post("original")
    share(other, node)
    node.follow(other.me)
    node.set_profile(name="Me")
    repost = node.repost(post.id)
    node.react(post.id)
    assert ids(node.timeline()) == [repost.id, post.id]


def test_thread_is_a_tree_in_reading_order(node: LocalNode, other: LocalNode) -> None:
    root = node.post("root")
    share(node, other)
    a = other.post("a", reply_to=root.id)
    share(other, node)
    a1 = node.post("a1", reply_to=a.id)
    b = node.post("b", reply_to=root.id)
    a2 = node.post("a2", reply_to=a.id)
    a1x = node.post("a1x", reply_to=a1.id)
    unrelated = node.post("unrelated")
    expected = [(root.id, 0), (a.id, 1), (a1.id, 2), (a1x.id, 3), (a2.id, 2), (b.id, 1)]
    for start in (root, a, a1x, b):
        thread = node.thread(start.id)
        assert thread.root_id == root.id
        assert [(item.stored.entry.id, item.depth) for item in thread.items] == expected
    alone = node.thread(unrelated.id)
    assert [(item.stored.entry.id, item.depth) for item in alone.items] == [(unrelated.id, 0)]


def test_thread_whose_root_is_not_held(make_node: NodeFactory) -> None:
    author, replier, reader = make_node("author"), make_node("replier"), make_node("reader")
    root = author.post("root")
    share(author, replier)
    reply = replier.post("reply", reply_to=root.id)
    share(replier, reader)
    thread = reader.thread(reply.id)
    assert thread.root_id == root.id
    assert [(item.stored.entry.id, item.depth) for item in thread.items] == [(reply.id, 1)]


# --- moving logs ------------------------------------------------------------------


def test_export_then_import_round_trips(node: LocalNode, other: LocalNode, tmp_path: Path) -> None:
    root = node.post("hello #world")
    node.post("a reply", reply_to=root.id)
    node.set_profile(name="Me")
    node.follow(other.me)
    gone = node.post("gone")
    node.delete(gone.id)
    path = tmp_path / "me.torv"
    with path.open("xb") as out:
        assert node.export(out) == 6
    report = other.import_file(path)
    assert (report.stored, report.duplicates, report.forks) == (6, 0, 0)
    mine = [(s.entry.id, s.entry.payload, s.deleted) for s in node.store.log(node.me)]
    theirs = [(s.entry.id, s.entry.payload, s.deleted) for s in other.store.log(node.me)]
    assert theirs == mine
    info = other.store.feed_info(node.me)
    assert info is not None
    assert info.name == "Me"
    assert other.store.following(node.me) == [other.me]
    assert other.store.verify_all().entries == 6
    again = other.import_file(path)
    assert (again.stored, again.duplicates) == (0, 6)


def test_export_of_another_feed(node: LocalNode, other: LocalNode, tmp_path: Path) -> None:
    other.post("theirs")
    share(other, node)
    path = tmp_path / "other.torv"
    with path.open("xb") as out:
        assert node.export(out, other.me) == 1
    with pytest.raises(NotFound, match=feed_id_to_text(node.me)):
        node.export(io.BytesIO())  # nothing of mine yet
    assert other.import_file(path).duplicates == 1


def test_import_of_a_missing_file(node: LocalNode, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="cannot read"):
        node.import_file(tmp_path / "nope.torv")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bytes, LocalNode]]:
    """An export file of a small log, and a node that holds one post of its own."""
    base = tmp_path_factory.mktemp("exported")
    LocalNode.init(Home(base / "writer"))
    LocalNode.init(Home(base / "reader"))
    with LocalNode.open(Home(base / "writer")) as writer:
        root = writer.post("first #one")
        writer.post("second", reply_to=root.id)
        writer.react(root.id)
        path = base / "log.torv"
        with path.open("xb") as out:
            writer.export(out)
    with LocalNode.open(Home(base / "reader")) as reader:
        reader.post("the reader's own post")
        yield path.read_bytes(), reader


def assert_rejected(reader: LocalNode, data: bytes) -> None:
    path = reader.home.path / "tampered.torv"
    path.write_bytes(data)
    before = reader.store.count()
    with pytest.raises(BadExportFile, match="nothing imported"):
        reader.import_file(path)
    assert reader.store.count() == before == 1
    assert len(reader.store.feeds()) == 1


@given(st.data())
def test_import_of_a_truncated_file_stores_nothing(
    exported: tuple[bytes, LocalNode], data: st.DataObject
) -> None:
    good, reader = exported
    length = data.draw(st.integers(min_value=0, max_value=len(good) - 1), label="length")
    assert_rejected(reader, good[:length])


@given(st.data())
def test_import_of_a_tampered_file_stores_nothing(
    exported: tuple[bytes, LocalNode], data: st.DataObject
) -> None:
    good, reader = exported
    index = data.draw(st.integers(min_value=0, max_value=len(good) - 1), label="index")
    flip = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    tampered = bytearray(good)
    tampered[index] ^= flip
    assert_rejected(reader, bytes(tampered))


@pytest.mark.parametrize(
    "change",
    [
        lambda good: good + b"\x00",
        lambda good: b"",
        lambda good: b"torv-export-2\n" + good[14:],
        lambda good: good[:-40] + good[-32:],  # the count of records is cut out
    ],
    ids=["trailing-bytes", "empty", "wrong-magic", "no-count"],
)
def test_import_of_a_damaged_file_stores_nothing(
    exported: tuple[bytes, LocalNode], change: Callable[[bytes], bytes]
) -> None:
    good, reader = exported
    assert_rejected(reader, change(good))


def test_the_good_export_imports(exported: tuple[bytes, LocalNode], tmp_path: Path) -> None:
    good, _ = exported
    path = tmp_path / "good.torv"
    path.write_bytes(good)
    LocalNode.init(Home(tmp_path / "fresh"))
    with LocalNode.open(Home(tmp_path / "fresh")) as fresh:
        assert fresh.import_file(path).stored == 3
