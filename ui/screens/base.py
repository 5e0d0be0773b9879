"""What every screen of the app shares: the client, live reloads, going back,
and the common shape of a screen that lists posts."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.dom import NoScreen
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from node import TorvError
from node.client import NodeClient
from node.views import MAX_PAGE, ClientEvent, PostView, SettingsView
from ui.widgets.navbar import NavBar
from ui.widgets.post_list import PostList

if TYPE_CHECKING:
    from ui.app import TorvApp

__all__ = [
    "INPUT_GRACE",
    "PAGE",
    "RELOAD_DELAY",
    "SETTINGS_RECHECK",
    "PostsScreen",
    "TorvScreen",
]

#: Posts fetched per page.
PAGE = 50
#: A screen reloads for node events at most once per this many seconds: at
#: once for an event after a quiet spell, else once the interval has passed.
RELOAD_DELAY = 0.3
#: While the reader presses keys (or scrolls), a reload for node events waits
#: until this many seconds have passed since the last one: a key is answered
#: at once, never after redrawing a list that new posts changed.
INPUT_GRACE = 0.3
#: Seconds between two readings of the settings while home reloads: how soon
#: the app notices that the chosen algorithm started to fail.
SETTINGS_RECHECK = 10.0


class TorvScreen(Screen[None]):
    """A screen of the app: reloads when it is shown and when the node says
    something it shows may have changed (at most once per :data:`RELOAD_DELAY`,
    and not while the reader is pressing keys: :data:`INPUT_GRACE`)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self._reload_timer: Timer | None = None
        self._reloaded_at = -RELOAD_DELAY  # time.monotonic() of the last reload for events

    @property
    def torv(self) -> TorvApp:
        return cast("TorvApp", self.app)

    @property
    def client(self) -> NodeClient:
        return self.torv.client

    def nav(self) -> NavBar:
        bar = NavBar(self.app.current_mode)
        bar.peers = self.torv.peer_count
        return bar

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            return len(self.app.screen_stack) > 1
        return True

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def on_screen_resume(self) -> None:
        for bar in self.query(NavBar):
            bar.peers = self.torv.peer_count
        self.reload()

    # --- live updates -------------------------------------------------------------------

    def wants(self, event: ClientEvent) -> bool:
        """Whether ``event`` may change what this screen shows."""
        return event.kind == "entry"

    def node_event(self, event: ClientEvent) -> None:
        """Called by the app for each node event while this screen is on top."""
        if not self.wants(event) or self._reload_timer is not None:
            return
        wait = self._reloaded_at + RELOAD_DELAY - time.monotonic()
        if wait <= 0:
            self._reload_now()
        else:
            self._reload_timer = self.set_timer(wait, self._reload_now)

    def _reload_now(self) -> None:
        quiet = self.torv.input_at + INPUT_GRACE - time.monotonic()
        if quiet > 0:
            self._reload_timer = self.set_timer(quiet, self._reload_now)
            return
        self._reload_timer = None
        self._reloaded_at = time.monotonic()
        self.reload()

    def settings_changed(self, settings: SettingsView) -> None:
        """Called by the app when it read the settings while this screen is on top."""

    def reload(self) -> None:
        """Fetch what the screen shows again (in a worker; never blocks)."""


class PostsScreen(TorvScreen):
    """A screen around one :class:`PostList`, paged by cursor, kept in place on reload."""

    #: The line under the tabs.
    HEADING: ClassVar[str] = ""
    #: Shown instead of the list while it is empty.
    EMPTY: ClassVar[str] = "Nothing here yet."
    #: Whether older pages can be fetched (a thread comes whole).
    PAGED: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.exhausted = False
        self.loaded = False
        self._select: bytes | None = None
        self._heading = self.HEADING

    def compose(self) -> ComposeResult:
        yield self.nav()
        yield Static(self._heading, classes="heading", id="heading")
        yield from self.compose_top()
        yield PostList(self.torv.clock, fold_cw=self.torv.fold_cw, id="posts")
        yield Static(self.EMPTY, classes="empty", id="empty")
        yield Footer(compact=True)

    def compose_top(self) -> ComposeResult:
        """Widgets between the heading and the list (a profile card, a search field)."""
        yield from ()

    @property
    def post_list(self) -> PostList:
        return self.query_one(PostList)

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        """The posts to show, newest first (blocking: runs in a worker thread)."""
        raise NotImplementedError

    def set_heading(self, text: str) -> None:
        """Say ``text`` under the tabs."""
        self._heading = text
        if self.is_mounted:
            self._show_heading()

    def _show_heading(self, note: str = "") -> None:
        """The heading, with how many new posts wait above, and ``note``."""
        text = self._heading
        for posts in self.query(PostList):
            if posts.new_above:
                plural = "" if posts.new_above == 1 else "s"
                text = f"{text}  · ↑ {posts.new_above} new post{plural} above (k)"
        if note:
            text = f"{text}  · {note}"
        # One line, whatever it says: no layout of the screen is needed.
        for heading in self.query("#heading").results(Static):
            heading.update(text, layout=False)

    def select_next_load(self, item_id: bytes) -> None:
        """Highlight ``item_id`` when the next load shows it."""
        self._select = item_id

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        posts = self.post_list
        shown = list(posts.posts)
        moves = posts.moves
        want = min(MAX_PAGE, max(PAGE, len(shown))) if self.PAGED else MAX_PAGE
        if not self.loaded:
            posts.loading = True
        try:
            fresh = await self.torv.ask(self.fetch, want, None)
        except TorvError as exc:
            self.torv.report(exc)
            return
        finally:
            # The app may be closing (the reader quit while the node was
            # answering): the list then has no screen to redraw on.
            with contextlib.suppress(NoScreen):
                posts.loading = False
        if not self.is_attached:
            return  # the screen went away while the node answered
        self.loaded = True
        if self.PAGED:
            self.exhausted = len(fresh) < want
            if len(fresh) == want and len(shown) > want:
                # Keep the older pages the reader already scrolled through (a
                # shorter answer is all there is: what it left out is gone).
                oldest = fresh[-1].cursor
                fresh += [post for post in shown if post.cursor < oldest]
        select, self._select = self._select, None
        if posts.moves != moves:
            select = None  # the reader moved while the node answered: their move wins
        posts.fold_cw = self.torv.fold_cw
        posts.show(fresh, select=select)
        self._update_empty()
        self.after_load()

    def after_load(self) -> None:
        """Called after each load (a screen may update more than the list)."""

    def _update_empty(self) -> None:
        posts = self.post_list
        empty = not posts.posts
        # Queried, not assumed: a screen being torn down may have lost it.
        for placeholder in self.query("#empty"):
            placeholder.display = empty
        posts.display = not empty
        if not empty and self.focused is None:
            posts.focus()

    @on(PostList.NewAbove)
    def _new_above(self) -> None:
        self._show_heading()

    @on(PostList.EndReached)
    def _end_reached(self) -> None:
        if self.PAGED and self.loaded and not self.exhausted:
            self._load_more()

    @work(exclusive=True, group="more")
    async def _load_more(self) -> None:
        posts = self.post_list
        if not posts.posts or self.exhausted:
            return
        last = posts.posts[-1]
        self._show_heading("loading more…")
        try:
            page = await self.torv.ask(self.fetch, PAGE, last.cursor)
        except TorvError as exc:
            self.torv.report(exc)
            return
        finally:
            self._show_heading()
        self.exhausted = len(page) < PAGE
        posts.extend(page)
