"""Fixed data for the app's snapshots and screenshots, and real nodes for its tests.

:func:`fixed_home` writes a data directory whose every key and timestamp is
fixed, so that screens render the same on every machine. :class:`StoreClient`
is a :class:`node.client.NodeClient` over that store without networking: its
posts and settings are real (signed entries and ``config.toml``, read and
changed through :class:`node.views.Views`), while the network it reports, and
the node's seeds, key and data directory in the settings, are fixed.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.padding import Padding
from rich.text import Text
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Footer

from node.client import EventCallback, InProcessClient, start_node
from node.home import Home
from node.local import LocalNode
from node.runtime import NodeOptions
from node.testing import TEST_NETWORK_KEY
from node.views import (
    ClientEvent,
    NetworkView,
    PeerView,
    PostView,
    ProfileView,
    SettingsView,
    SyncView,
    Views,
)
from storage import Entry, Follow, Payload, Post, Profile, React, Repost, create_entry
from ui.screens.base import PostsScreen
from ui.screens.network import NetworkScreen
from ui.widgets.post_list import PostList

__all__ = [
    "NOW",
    "Person",
    "StoreClient",
    "fixed_client",
    "fixed_clock",
    "fixed_home",
    "key_for",
    "rendered",
    "run",
    "running_node",
    "settle",
    "wait_until",
]

T = TypeVar("T")

#: The frozen "now" of every fixed screen: 2026-03-14 12:00:00 UTC, in ms.
NOW: Final = 1_773_489_600_000
_MINUTE: Final = 60_000
_HOUR: Final = 60 * _MINUTE


def fixed_clock() -> float:
    return NOW / 1000


def key_for(name: str) -> Ed25519PrivateKey:
    """The same key for ``name`` on every run."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"torv ui fixture " + name.encode()).digest()
    )


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    key: Ed25519PrivateKey

    @property
    def feed(self) -> bytes:
        return self.key.public_key().public_bytes_raw()


class _Writer:
    """Appends entries with chosen timestamps to one store, each log in order."""

    def __init__(self, local: LocalNode) -> None:
        self.local = local

    def write(self, person: Person, payload: Payload, ago_ms: int) -> Entry:
        return self.local.store.append(person.key, payload, timestamp=NOW - ago_ms)


def fixed_home(path: Path) -> tuple[Home, dict[str, Person]]:
    """A data directory for "you" with four other people, posts, replies,
    reactions, a repost, a content warning and a forked feed; nothing random."""
    home = Home(path)
    me = Person("you", key_for("owner"))
    people = {name: Person(name, key_for(name)) for name in ("Ada", "Bruno", "Chiara", "Dmitri")}
    LocalNode.init(home, key=me.key)
    with LocalNode.open(home) as local:
        w = _Writer(local)
        ada, bruno, chiara, dmitri = (people[n] for n in ("Ada", "Bruno", "Chiara", "Dmitri"))
        w.write(me, Profile(name="Sam", bio="Trying out torv."), 7 * 24 * _HOUR)
        for person, bio in (
            (ada, "Mathematician. Writes about engines and looms."),
            (bruno, "Bakes bread at 4am. Sourdough evangelist."),
            (chiara, "Marine biologist counting jellyfish. #ocean"),
        ):
            w.write(person, Profile(name=person.name, bio=bio), 6 * 24 * _HOUR)
        for person in (ada, bruno, chiara):
            w.write(me, Follow(feed=person.feed), 47 * _HOUR)
        w.write(ada, Follow(feed=me.feed), 46 * _HOUR)
        jelly = w.write(
            chiara,
            Post(
                text="Counted 412 moon jellies in one transect today. That is a lot of jellies."
                " #ocean",
                tags=("ocean",),
            ),
            5 * 24 * _HOUR,
        )
        engine = w.write(
            ada,
            Post(
                text="The engine might compose elaborate pieces of music of any degree of"
                " complexity. #engines",
                tags=("engines",),
            ),
            3 * _HOUR,
        )
        w.write(bruno, React(entry=engine.id, author=ada.feed, emoji="♥"), 2 * _HOUR)
        w.write(chiara, React(entry=engine.id, author=ada.feed, emoji="🔥"), 2 * _HOUR)
        mine = w.write(me, Post(text="Hello, square! First post from the terminal. #torv"), _HOUR)
        w.write(me, React(entry=engine.id, author=ada.feed, emoji="♥"), 50 * _MINUTE)
        w.write(
            ada,
            Post(
                text="Welcome, Sam! Press ? for the keys.",
                root=mine.id,
                parent=mine.id,
                mentions=(me.feed,),
            ),
            40 * _MINUTE,
        )
        w.write(
            bruno,
            Post(
                text="The loaf collapsed in the oven. Again. Full story below.",
                cw="baking disaster",
            ),
            20 * _MINUTE,
        )
        w.write(bruno, Repost(entry=jelly.id, author=chiara.feed), 12 * _MINUTE)
        w.write(
            chiara,
            Post(text="Tide is out, the pools are full of life.", tags=()),
            2 * _MINUTE,
        )
        # Dmitri's key signed two different second entries: a forked feed.
        first = create_entry(
            dmitri.key,
            seq=1,
            prev=None,
            timestamp=NOW - 30 * _HOUR,
            payload=Profile(name="Dmitri", bio="Tables, elements, the odd chess puzzle."),
        )
        forks = [
            create_entry(
                dmitri.key,
                seq=2,
                prev=first.id,
                timestamp=NOW - 29 * _HOUR,
                payload=Post(text=text),
            )
            for text in ("Beryllium next.", "Boron next.")
        ]
        local.store.ingest([first, *forks])
    return home, {"you": me, **people}


class StoreClient:
    """A :class:`NodeClient` over a store, with no network (fixed network data)."""

    embedded = True

    def __init__(self, local: LocalNode, people: dict[str, Person] | None = None) -> None:
        self.local = local
        self.views = Views(local)
        self.me: bytes = local.me
        self._lock = threading.Lock()
        self._people = people or {}
        self.callbacks: list[EventCallback] = []

    def _do(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return fn(*args, **kwargs)

    def home(self, limit: int = 50, before: tuple[int, int] | None = None) -> list[PostView]:
        return self._do(self.views.home, limit, before)

    def square(self, limit: int = 50, before: tuple[int, int] | None = None) -> list[PostView]:
        return self._do(self.views.square, limit, before)

    def mentions(self, limit: int = 50, before: tuple[int, int] | None = None) -> list[PostView]:
        return self._do(self.views.mentions, limit, before)

    def feed(
        self, feed: bytes, limit: int = 50, before: tuple[int, int] | None = None
    ) -> list[PostView]:
        return self._do(self.views.feed, feed, limit, before)

    def search(self, query: str, limit: int = 50) -> list[PostView]:
        return self._do(self.views.search, query, limit)

    def thread(self, entry_id: bytes) -> list[PostView]:
        return self._do(self.views.thread, entry_id)

    def post_view(self, entry_id: bytes) -> PostView | None:
        return self._do(self.views.post, entry_id)

    def profile(self, feed: bytes) -> ProfileView:
        return self._do(self.views.profile, feed)

    def network(self) -> NetworkView:
        people = [p for name, p in sorted(self._people.items()) if name != "you"]
        peers = tuple(
            PeerView(
                identity=person.feed,
                name=f"~{person.name}",
                address=f"10.0.0.{index + 2}:4710",
                outbound=index % 2 == 0,
                score=round(12.5 - 3.25 * index, 2),
                uptime=3725.0 - 900 * index,
            )
            for index, person in enumerate(people[:3])
        )
        sync = tuple(
            SyncView(person.feed, f"~{person.name}", have, target)
            for person, (have, target) in zip(
                people[1:], ((120, 480), (37, 40), (5, 5)), strict=True
            )
        )
        return NetworkView(
            identity=self.me,
            listen="0.0.0.0:4710",
            dht="0.0.0.0:4710",
            peers=peers,
            dht_contacts=("10.0.0.2:4710", "10.0.0.3:4710", "192.0.2.10:4710"),
            sync=sync,
            topics=6,
            mesh_links=9,
            entries_in=1234,
            entries_out=321,
        )

    def settings(self) -> SettingsView:
        view = self._do(
            self.views.settings,
            seeds=("192.0.2.10:4710",),
            network_key=bytes(32),
            hops=1,
            square=False,
        )
        # Where the data directory is differs from run to run; the screen does not.
        return replace(view, data_dir="/home/sam/.local/share/torv")

    def set_algorithm(self, name: str) -> None:
        self._do(self.views.set_algorithm, name)

    def set_muted(self, feed: bytes, muted: bool) -> None:
        self._do(self.views.set_muted, feed, muted)

    def set_reposts_hidden(self, feed: bytes, hidden: bool) -> None:
        self._do(self.views.set_reposts_hidden, feed, hidden)

    def set_filters(self, words: list[str], tags: list[str]) -> None:
        self._do(self.views.set_filters, words, tags)

    def set_fold_cw(self, fold: bool) -> None:
        self._do(self.views.set_fold_cw, fold)

    def set_square_hops(self, hops: int | None) -> None:
        self._do(self.views.set_square_hops, hops)

    def post(self, text: str, *, reply_to: bytes | None = None, cw: str | None = None) -> bytes:
        entry = self._do(self.local.post, text, reply_to=reply_to, cw=cw)
        self.emit(ClientEvent("entry", entry_id=entry.id, author=self.me, entry_kind="post"))
        return bytes(entry.id)

    def react(self, entry_id: bytes, emoji: str = "♥") -> None:
        self._do(self.local.react, entry_id, emoji)

    def repost(self, entry_id: bytes) -> None:
        self._do(self.local.repost, entry_id)

    def follow(self, feed: bytes) -> None:
        self._do(self.local.follow, feed)

    def unfollow(self, feed: bytes) -> None:
        self._do(self.local.unfollow, feed)

    def block(self, feed: bytes) -> None:
        self._do(self.local.block, feed)

    def unblock(self, feed: bytes) -> None:
        self._do(self.local.unblock, feed)

    def set_profile(self, *, name: str | None = None, bio: str | None = None) -> None:
        self._do(self.local.set_profile, name=name, bio=bio)

    def subscribe(self, callback: EventCallback) -> None:
        self.callbacks.append(callback)

    def emit(self, event: ClientEvent) -> None:
        for callback in self.callbacks:
            callback(event)

    def close(self) -> None:
        """Nothing to stop: the caller closes the store."""


@contextmanager
def running_node(
    path: Path, *, name: str | None = None, bootstrap: tuple[tuple[str, int], ...] = ()
) -> Iterator[InProcessClient]:
    """A real node on loopback for a new identity in ``path`` (closed on exit)."""
    home = Home(path)
    LocalNode.init(home)
    local = LocalNode.open(home)
    try:
        client = start_node(local, NodeOptions(network_key=TEST_NETWORK_KEY, bootstrap=bootstrap))
        try:
            if name is not None:
                client.set_profile(name=name)
            yield client
        finally:
            client.close()
    finally:
        local.close()


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], object], *, within: float = 15.0
) -> None:
    """Let the app run until ``predicate()`` is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {within} s: {predicate}")
        await pilot.pause(0.02)


def rendered(post_list: PostList, index: int) -> str:
    """The text of the post at ``index`` as the list draws it."""
    prompt = post_list.get_option_at_index(index).prompt
    if isinstance(prompt, Padding):
        prompt = prompt.renderable
    assert isinstance(prompt, Text)
    return prompt.plain


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an async test scenario on asyncio (textual's loop)."""
    asyncio.run(scenario())


@contextmanager
def fixed_client(path: Path) -> Iterator[StoreClient]:
    """A :class:`StoreClient` over :func:`fixed_home` written in ``path``."""
    home, people = fixed_home(path)
    with LocalNode.open(home) as local:
        yield StoreClient(local, people)


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until no worker of the app runs and the screen has loaded."""
    app = pilot.app
    await pilot.pause()
    await wait_until(pilot, lambda: not any(w.is_running for w in app.workers))
    screen = app.screen
    if isinstance(screen, PostsScreen):
        await wait_until(pilot, lambda: screen.loaded)
    if isinstance(screen, NetworkScreen):
        await wait_until(pilot, lambda: screen.view is not None)
    await wait_until(pilot, lambda: not any(w.is_running for w in app.workers))
    await wait_until(pilot, lambda: _footer_caught_up(app.screen))
    await pilot.pause()


def _footer_caught_up(screen: Screen[Any]) -> bool:
    """Whether the footer shows every key the focused widget and screen offer
    (it redraws itself some time after the focus moves)."""
    active = screen.active_bindings.values()
    wanted = {binding.action for _, binding, _, _ in active if binding.show}
    for footer in screen.query(Footer):
        shown = {getattr(key, "action", None) for key in footer.query("FooterKey")}
        if not wanted <= shown:
            return False
    return True
