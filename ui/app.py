"""The terminal app: :func:`make_app` builds it around a :class:`NodeClient`.

Every client call blocks, so the app makes them in worker threads
(:meth:`TorvApp.ask`) and never on its event loop. Node events arrive on
another thread, wait in a queue and are handed to the screen on top in
batches (one :class:`TorvApp.NodeEvents` message per batch, however fast the
node ingests); the screen decides whether to reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, ParamSpec, TypeVar

from textual import events, on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.dom import NoScreen
from textual.message import Message
from textual.screen import Screen

from node import TorvError
from node.client import NodeClient
from node.views import ClientEvent, PostView, SettingsView
from ui.commands import TorvCommands
from ui.format import Clock
from ui.screens.base import PostsScreen, TorvScreen
from ui.screens.compose import ComposeScreen
from ui.screens.help import HelpScreen
from ui.screens.network import NetworkScreen
from ui.screens.profile import ProfileScreen
from ui.screens.search import SearchScreen
from ui.screens.settings import SettingsScreen
from ui.screens.thread import ThreadScreen
from ui.screens.timelines import HomeScreen, MentionsScreen, SquareScreen
from ui.widgets.navbar import NavBar
from ui.widgets.post_list import PostList

__all__ = ["NodeCallFailed", "TorvApp", "make_app"]

P = ParamSpec("P")
T = TypeVar("T")


class NodeCallFailed(TorvError):
    """A client call failed in a way the client did not name (the node went away)."""


class TorvApp(App[None]):
    """The torv terminal app. Build it with :func:`make_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "torv"
    COMMANDS = App.COMMANDS | {TorvCommands}
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "home": HomeScreen,
        "square": SquareScreen,
        "mentions": MentionsScreen,
        "network": NetworkScreen,
        "profile": ProfileScreen,
        "settings": SettingsScreen,
    }
    # 1-6 are not in the footer: the tabs at the top show them.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "go('home')", "Home", show=False),
        Binding("2", "go('square')", "Square", show=False),
        Binding("3", "go('mentions')", "Mentions", show=False),
        Binding("4", "go('network')", "Network", show=False),
        Binding("5", "go('profile')", "Profile", show=False),
        Binding("6", "go('settings')", "Settings", show=False),
        Binding("n", "compose", "Post"),
        Binding("slash", "search", "Search"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    class NodeEvents(Message):
        """The node reported events; they wait in the app's queue (posted from
        the node's thread, once for every batch that found the queue empty)."""

    def __init__(self, client: NodeClient, *, clock: Clock = time.time) -> None:
        super().__init__()
        self.client = client
        #: Seconds since the epoch; relative times ("2m") are measured from it.
        self.clock = clock
        #: Whether content warnings are folded (the setting, once it was read).
        self.fold_cw = True
        #: The settings as last read (``None`` until then).
        self.settings: SettingsView | None = None
        #: ``time.monotonic()`` of the reader's last key or scroll.
        self.input_at = -1e9
        self._peers: set[bytes] = set()
        self._peer_count: int | None = None
        # Peer events seen while the first view of the network is on its way
        # (``None`` once it is in): the view may be older than some of them.
        self._early_peer_events: list[ClientEvent] | None = []
        self._events: deque[ClientEvent] = deque()
        self._events_lock = threading.Lock()
        self._events_posted = False
        self._settings_read_at = -1e9
        self._algorithm_error_told: str | None = None

    # --- start, calls to the node, errors ----------------------------------------------

    def on_mount(self) -> None:
        self.switch_mode("home")
        self._connect()

    @work(group="connect")
    async def _connect(self) -> None:
        with self.reporting():
            await self.ask(self.client.subscribe, self._deliver)
            view = await self.ask(self.client.network)
            # The view was read after the subscription began, so replaying
            # every peer event seen since, in order, onto it leaves each peer
            # as its latest news says (a peer that came up while the view was
            # read is not lost to a view taken just before).
            peers = {peer.identity for peer in view.peers}
            for event in self._early_peer_events or ():
                _apply_peer_event(peers, event)
            self._early_peer_events = None
            self._peers = peers
            self.set_peer_count(len(self._peers))

    def _deliver(self, event: ClientEvent) -> None:
        # Runs on the node's thread: queue the event, never block or raise. One
        # message wakes the app for however many events queue up meanwhile.
        with self._events_lock:
            self._events.append(event)
            if self._events_posted:
                return
            self._events_posted = True
        with contextlib.suppress(Exception):
            self.post_message(self.NodeEvents())

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseScrollDown | events.MouseScrollUp):
            self.input_at = time.monotonic()
        await super().on_event(event)

    async def ask(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking client call in a worker thread and return its result.

        Raises the client's :class:`TorvError`; anything else it raised comes
        back as :class:`NodeCallFailed`.
        """
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except TorvError:
            raise
        except Exception as exc:
            self.log.error(f"client call {getattr(fn, '__name__', fn)} failed: {exc!r}")
            raise NodeCallFailed(f"the node did not answer: {exc or type(exc).__name__}") from exc

    def report(self, error: TorvError) -> None:
        """Tell the reader what went wrong, as a notification."""
        self.notify(str(error), title="That did not work", severity="error", timeout=8)

    @contextlib.contextmanager
    def reporting(self) -> Iterator[None]:
        """Report a :class:`TorvError` raised in the block instead of raising it."""
        try:
            yield
        except TorvError as exc:
            self.report(exc)

    # --- peers ------------------------------------------------------------------------------

    @property
    def peer_count(self) -> int | None:
        """How many peers are connected (``None`` until the node said)."""
        return self._peer_count

    def set_peer_count(self, count: int) -> None:
        self._peer_count = count
        try:
            screen = self.screen
        except NoScreen:
            return  # no screen yet (or any more): a screen reads the count as it mounts
        for bar in screen.query(NavBar):
            bar.peers = count

    @on(NodeEvents)
    def _node_events(self) -> None:
        with self._events_lock:
            batch = list(self._events)
            self._events.clear()
            self._events_posted = False
        peers_changed = False
        for event in batch:
            if _apply_peer_event(self._peers, event):
                peers_changed = True
                if self._early_peer_events is not None:
                    self._early_peer_events.append(event)
        if peers_changed:
            self.set_peer_count(len(self._peers))
        for screen in reversed(self.screen_stack):
            if isinstance(screen, TorvScreen):
                for event in batch:
                    screen.node_event(event)
                break

    # --- settings -----------------------------------------------------------------------

    def check_settings(self, *, within: float = 0.0) -> None:
        """Read the settings again (in a worker), unless they were read less
        than ``within`` seconds ago; see :meth:`settings_changed`."""
        if time.monotonic() - self._settings_read_at >= within:
            self._settings_read_at = time.monotonic()
            self._read_settings()

    @work(exclusive=True, group="settings")
    async def _read_settings(self) -> None:
        with self.reporting():
            self.settings_changed(await self.ask(self.client.settings))

    def settings_changed(self, settings: SettingsView) -> None:
        """Take in settings just read from the node: fold content warnings or
        not, and say (once per distinct error) that the chosen algorithm fails."""
        self.settings = settings
        self._settings_read_at = time.monotonic()
        if settings.fold_cw != self.fold_cw:
            self.fold_cw = settings.fold_cw
            # The lists of other screens catch up when they load next.
            for post_list in self.screen.query(PostList):
                post_list.fold_cw = settings.fold_cw
        error = settings.algorithm_error
        if error != self._algorithm_error_told:
            self._algorithm_error_told = error
            if error is not None:
                self.notify(
                    f"Your algorithm {settings.algorithm} failed: {error}; showing latest.",
                    title="Timeline algorithm",
                    severity="warning",
                    timeout=12,
                )
        screen = self.screen
        if isinstance(screen, TorvScreen):
            screen.settings_changed(settings)

    # --- navigation -------------------------------------------------------------------------

    async def action_go(self, mode: str) -> None:
        """Show main screen ``mode``; if it is shown already, go back to its top."""
        if mode == self.current_mode:
            while len(self.screen_stack) > 1:
                self.pop_screen()
            return
        await self.switch_mode(mode)

    def action_compose(self, reply_to: PostView | None = None) -> None:
        self.push_screen(ComposeScreen(reply_to), self._posted)

    def action_search(self) -> None:
        if isinstance(self.screen, SearchScreen):
            self.screen.action_focus_query()
            return
        self.push_screen(SearchScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_why(self) -> None:
        """Show (or hide) why the highlighted post of the screen is in its list."""
        for post_list in self.screen.query(PostList):
            if post_list.current is not None:
                post_list.action_why()
                return
        self.notify("Highlight a post first (j, k).", severity="warning")

    def show_profile(self, feed: bytes) -> None:
        """Open the profile of ``feed`` on top of the current screen."""
        screen = self.screen
        if isinstance(screen, ProfileScreen) and screen.feed == feed:
            return
        self.push_screen(ProfileScreen(feed))

    def show_thread(self, entry_id: bytes) -> None:
        """Open the thread around ``entry_id``."""
        screen = self.screen
        if isinstance(screen, ThreadScreen) and any(
            post.id == entry_id for post in screen.post_list.posts
        ):
            return
        self.push_screen(ThreadScreen(entry_id))

    # --- what the reader asked of a post ---------------------------------------------------

    @on(PostList.Opened)
    def _opened(self, message: PostList.Opened) -> None:
        if message.post.held:
            self.show_thread(message.post.id)

    @on(PostList.Asked)
    def _asked(self, message: PostList.Asked) -> None:
        post = message.post
        if message.action == "reply":
            if not post.held or post.deleted or post.hidden:
                self.notify("That post is not here to reply to.", severity="warning")
                return
            self.action_compose(post)
        elif message.action == "like":
            self._like(message.post_list, post)
        elif message.action == "repost":
            self._repost(post)
        elif message.action == "follow":
            self._follow(post.author)
        elif message.action == "profile":
            self.show_profile(post.author)

    def _posted(self, entry_id: bytes | None) -> None:
        if entry_id is None:
            return
        if self.peer_count:
            self.notify("Posted.")
        else:
            self.notify("Posted. No peers are connected: it will sync when peers are reachable.")
        screen = self.screen
        if isinstance(screen, PostsScreen):
            screen.select_next_load(entry_id)
            screen.reload()

    @work(group="act")
    async def _like(self, post_list: PostList, post: PostView) -> None:
        if post.liked:
            self.notify("You like this already.")
            return
        with self.reporting():
            await self.ask(self.client.react, post.id)
            fresh = await self.ask(self.client.post_view, post.id)
            if fresh is not None:
                post_list.update_post(fresh)

    @work(group="act")
    async def _repost(self, post: PostView) -> None:
        with self.reporting():
            await self.ask(self.client.repost, post.id)
            whose = "your" if post.author == self.client.me else f"{post.author_name}'s"
            self.notify(f"Reposted {whose} post.")

    @work(group="act")
    async def _follow(self, feed: bytes) -> None:
        await self.toggle_follow(feed)

    async def toggle_follow(self, feed: bytes) -> None:
        """Follow ``feed``, or unfollow it if followed; say which."""
        with self.reporting():
            profile = await self.ask(self.client.profile, feed)
            if profile.is_me:
                self.notify("That is you.", severity="warning")
            elif profile.i_follow:
                await self.ask(self.client.unfollow, feed)
                self.notify(f"You no longer follow {profile.display_name}.")
            else:
                await self.ask(self.client.follow, feed)
                self.notify(
                    f"Following {profile.display_name}: their posts reach your home as they sync."
                )

    async def toggle_block(self, feed: bytes) -> None:
        """Block ``feed``, or unblock it if blocked; say which."""
        with self.reporting():
            profile = await self.ask(self.client.profile, feed)
            if profile.is_me:
                self.notify("That is you.", severity="warning")
            elif profile.i_block:
                await self.ask(self.client.unblock, feed)
                self.notify(f"Unblocked {profile.display_name}.")
            else:
                await self.ask(self.client.block, feed)
                self.notify(f"Blocked {profile.display_name}: you will not see their posts.")

    async def toggle_mute(self, feed: bytes) -> None:
        """Mute ``feed``, or unmute it if muted; say which. Muting is private."""
        with self.reporting():
            profile = await self.ask(self.client.profile, feed)
            if profile.is_me:
                self.notify("That is you.", severity="warning")
            elif profile.muted:
                await self.ask(self.client.set_muted, feed, False)
                self.notify(f"Unmuted {profile.display_name}: their posts show again.")
            else:
                await self.ask(self.client.set_muted, feed, True)
                self.notify(
                    f"Muted {profile.display_name}: their posts are hidden everywhere."
                    " Only you know (it is not published)."
                )

    async def toggle_reposts_hidden(self, feed: bytes) -> None:
        """Hide ``feed``'s reposts, or show them again; say which. This is private."""
        with self.reporting():
            profile = await self.ask(self.client.profile, feed)
            if profile.is_me:
                self.notify("That is you.", severity="warning")
            elif profile.reposts_hidden:
                await self.ask(self.client.set_reposts_hidden, feed, False)
                self.notify(f"{profile.display_name}'s reposts show again.")
            else:
                await self.ask(self.client.set_reposts_hidden, feed, True)
                self.notify(
                    f"{profile.display_name}'s reposts are hidden; their own posts still show."
                    " Only you know."
                )


def make_app(client: NodeClient, *, clock: Clock = time.time) -> TorvApp:
    """The app for ``client``: what ``torv ui`` runs and what the tests drive.

    ``clock`` (seconds since the epoch) is what relative times are measured
    from; tests freeze it. The app does not close the client.
    """
    return TorvApp(client, clock=clock)


def _apply_peer_event(peers: set[bytes], event: ClientEvent) -> bool:
    """Add or remove the peer of a ``peer-up`` or ``peer-down`` event; whether
    ``event`` was one of those."""
    if event.peer is None:
        return False
    if event.kind == "peer-up":
        peers.add(event.peer)
    elif event.kind == "peer-down":
        peers.discard(event.peer)
    else:
        return False
    return True
