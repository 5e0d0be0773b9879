"""The app's client: a node in a background trio thread, or one reached through
its control socket, gives the same views; events arrive from another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.client import AttachedClient, InProcessClient, start_node, view_from_wire
from node.control import ControlError
from node.home import Home
from node.local import LocalNode
from node.runtime import NodeOptions
from node.testing import TEST_NETWORK_KEY
from node.views import ClientEvent, PostView, ProfileView
from storage import ConfigError, NotFound

OPTIONS = NodeOptions(network_key=TEST_NETWORK_KEY, max_contacts_per_ip=None, maintain_interval=1)


class Changes:
    """Wakes a waiting test whenever either node reports an event."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __call__(self, event: ClientEvent) -> None:
        self._event.set()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Check ``condition`` now and after each event until it holds or the
        deadline passes (then fail)."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the condition did not hold in time")
            self._event.wait(remaining)
            self._event.clear()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[InProcessClient, InProcessClient]]:
    """Two running nodes: A, and B bootstrapped from A."""
    locals_: list[LocalNode] = []
    clients: list[InProcessClient] = []
    try:
        for name in ("a", "b"):
            home = Home(tmp_path / name)
            LocalNode.init(home)
            locals_.append(LocalNode.open(home))
        a = start_node(locals_[0], OPTIONS)
        clients.append(a)
        host, port = a.network().listen.split(":")
        b = start_node(
            locals_[1], NodeOptions(**{**_fields(OPTIONS), "bootstrap": ((host, int(port)),)})
        )
        clients.append(b)
        yield a, b
    finally:
        for client in clients:
            client.close()
        for local in locals_:
            local.close()


def _fields(options: NodeOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


def test_views_of_a_live_node_and_events_from_its_peer(
    pair: tuple[InProcessClient, InProcessClient], tmp_path: Path
) -> None:
    a, b = pair
    events: list[ClientEvent] = []
    changes = Changes()

    def on_b(event: ClientEvent) -> None:
        events.append(event)  # before the waiting test is woken
        changes(event)

    b.subscribe(on_b)
    a.subscribe(changes)
    b.follow(a.me)
    a.set_profile(name="Ana", bio="writes about #bees")
    first = a.post("Hello #world from Ana")
    reply = a.post("and a reply", reply_to=first)
    changes.wait_for(lambda: any(event.entry_id == reply for event in events))

    home = b.home()
    assert [view.id for view in home] == [reply, first]
    assert home[0].author_name == "~Ana"
    assert home[0].reply_to == first
    assert home[0].reply_to_name == "~Ana"
    assert home[1].tags == ("world",)

    b.react(first)
    b.repost(first)
    liked = b.post_view(first)
    assert liked is not None
    assert liked.liked
    assert liked.reactions == {"♥": 1}
    assert liked.reposts == 1
    assert b.home()[0].reposted_by == "you"  # the repost tops B's timeline

    thread = b.thread(reply)
    assert [(view.id, view.depth) for view in thread] == [(first, 0), (reply, 1)]
    assert [view.id for view in b.search("HELLO")] == [first]
    assert [view.id for view in b.search("#world")] == [first]
    assert b.search("nothing like this") == []

    profile = b.profile(a.me)
    assert isinstance(profile, ProfileView)
    assert (profile.name, profile.bio, profile.i_follow, profile.is_me) == (
        "Ana",
        "writes about #bees",
        True,
        False,
    )
    network = b.network()
    assert [peer.identity for peer in network.peers] == [a.me]
    assert network.entries_in >= 3  # the profile and two posts
    assert a.network().entries_out >= 3  # sent by sync or gossip, or both
    assert b.settings().network_key == TEST_NETWORK_KEY.hex()

    # A reply to B shows on B's mentions screen.
    a.follow(b.me)
    mine = b.post("a post of my own")
    changes.wait_for(lambda: a.post_view(mine) is not None)
    answer = a.post("thanks for the like", reply_to=mine)
    changes.wait_for(lambda: any(event.entry_id == answer for event in events))
    assert [view.id for view in b.mentions()] == [answer]
    # B met A before B's subscription (a node dials its seed as it starts):
    # a node that starts now shows as a peer-up event.
    home = Home(tmp_path / "c")
    LocalNode.init(home)
    with LocalNode.open(home) as local_c:
        host, port = b.network().listen.split(":")
        c = start_node(
            local_c, NodeOptions(**{**_fields(OPTIONS), "bootstrap": ((host, int(port)),)})
        )
        try:
            changes.wait_for(
                lambda: any(e.kind == "peer-up" and e.peer == local_c.me for e in events)
            )
        finally:
            c.close()

    with pytest.raises(NotFound):
        b.thread(bytes(32))


def test_an_attached_client_sees_what_the_node_sees(
    pair: tuple[InProcessClient, InProcessClient],
) -> None:
    a, _ = pair
    home = Home(Path(a.settings().data_dir))
    attached = AttachedClient(home)
    try:
        assert attached.me == a.me
        got = threading.Event()
        attached.subscribe(lambda event: got.set() if event.kind == "entry" else None)
        posted = attached.post("through the socket", cw="a test")
        assert got.wait(20)
        assert attached.home() == a.home()
        assert attached.home()[0].id == posted
        assert attached.home()[0].cw == "a test"
        assert attached.thread(posted) == a.thread(posted)
        assert attached.profile(a.me) == a.profile(a.me)
        assert attached.settings() == a.settings()
        assert attached.network().identity == a.me
        assert attached.home(limit=1, before=attached.home()[0].cursor) == a.home(
            limit=1, before=a.home()[0].cursor
        )
        with pytest.raises(NotFound):
            attached.thread(bytes(32))
    finally:
        attached.close()


def test_attaching_without_a_running_node_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no node is running"):
        AttachedClient(Home(tmp_path))


def test_malformed_views_from_the_socket_are_refused() -> None:
    with pytest.raises(ControlError, match="malformed PostView"):
        view_from_wire(PostView, ["not", "a", "map"])
    with pytest.raises(ControlError, match="malformed ProfileView"):
        view_from_wire(ProfileView, {"feed": b"x"})
