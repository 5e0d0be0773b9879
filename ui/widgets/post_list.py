"""A list of posts that keeps the reader's place when it is refilled."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import ClassVar

from rich.console import RenderableType
from textual import events, on
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from node.views import PostView
from ui.format import Clock, ms_now, relative_time
from ui.widgets.post import post_renderable

__all__ = ["PostList"]

#: Ask for the next page when the highlight comes this close to the end.
_NEAR_END = 3
#: Seconds between two renderings of the relative times.
_RETIME_EVERY = 30.0


class PostList(OptionList):
    """Posts, newest first (or a thread in reading order), one option each.

    The widget only shows posts and says what the reader asked for, as
    messages; the screen that holds it fetches and acts.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("enter", "select", "Open"),
        Binding("r", "ask('reply')", "Reply"),
        Binding("l", "ask('like')", "Like"),
        Binding("b", "ask('repost')", "Repost"),
        Binding("f", "ask('follow')", "Follow"),
        Binding("p", "ask('profile')", "Profile"),
        Binding("w", "why", "Why"),
        Binding("space", "toggle_cw", "Show CW", show=False),
    ]

    class PostMessage(Message):
        """Something about one post of the list."""

        def __init__(self, post_list: PostList, post: PostView) -> None:
            super().__init__()
            self.post_list = post_list
            self.post = post

        @property
        def control(self) -> PostList:
            return self.post_list

    class Opened(PostMessage):
        """The reader opened a post (enter, or a click on the highlighted post)."""

    class Asked(PostMessage):
        """The reader asked for ``action`` on a post: reply, like, repost, follow, profile."""

        def __init__(self, post_list: PostList, post: PostView, action: str) -> None:
            super().__init__(post_list, post)
            self.action = action

    class EndReached(Message):
        """The reader came near the end of the list: time for the next page."""

        def __init__(self, post_list: PostList) -> None:
            super().__init__()
            self.post_list = post_list

        @property
        def control(self) -> PostList:
            return self.post_list

    class NewAbove(Message):
        """``count`` items arrived above the highlighted one and were not read yet."""

        def __init__(self, post_list: PostList, count: int) -> None:
            super().__init__()
            self.post_list = post_list
            self.count = count

        @property
        def control(self) -> PostList:
            return self.post_list

    def __init__(self, clock: Clock, *, fold_cw: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._posts: list[PostView] = []
        self._fold_cw = fold_cw
        #: Posts (by id) whose content warning the reader opened (or, with
        #: folding off, closed) with space.
        self._toggled: set[bytes] = set()
        #: Items that show why they are in the list (w).
        self._why: set[bytes] = set()
        #: The option drawn for each item, with what it was drawn from: a reload
        #: reuses the options of unchanged items (their text is laid out already).
        self._drawn: dict[bytes, tuple[_Drawn, Option]] = {}
        self._fresh: set[bytes] = set()
        self.new_above = 0
        #: How many times the reader has moved the highlight.
        self.moves = 0
        self._moved = False

    # --- what is shown --------------------------------------------------------------

    @property
    def posts(self) -> Sequence[PostView]:
        return tuple(self._posts)

    @property
    def fold_cw(self) -> bool:
        """Whether content warnings are folded until the reader opens them."""
        return self._fold_cw

    @fold_cw.setter
    def fold_cw(self, fold: bool) -> None:
        if fold != self._fold_cw:
            self._fold_cw = fold
            self._toggled.clear()
            self._redraw()

    def unfolded(self, post: PostView) -> bool:
        """Whether the text behind ``post``'s content warning shows."""
        return (post.id in self._toggled) == self._fold_cw

    def showing_why(self, post: PostView) -> bool:
        """Whether ``post`` shows the line that says why it is in the list."""
        return post.item_id in self._why

    @property
    def current(self) -> PostView | None:
        """The highlighted post."""
        index = self.highlighted
        if index is None or not 0 <= index < len(self._posts):
            return None
        return self._posts[index]

    def show(self, posts: Iterable[PostView], *, select: bytes | None = None) -> None:
        """Show ``posts`` in place of the old ones, keeping the reader's place.

        Once the reader has moved, the highlighted item stays highlighted (by
        id, wherever it moved) and at the same height on screen, and items that
        arrive above it are counted in :attr:`new_above` until the reader moves
        up to them; before that, the list stays at its newest item. ``select``
        highlights that item instead, if it is among ``posts``.
        """
        new = _unique(posts)
        if new == self._posts and select is None:
            return
        current = self.current
        offset = self._screen_offset()
        old_index = self.highlighted
        old_ids = {post.item_id for post in self._posts}
        had_posts = bool(self._posts)
        self._posts = new
        self._rebuild()
        index = _index_of(new, select)
        if index is not None:
            offset = None
        elif not self._moved:
            # The reader has not moved yet: stay at the top, with the newest.
            index, offset = (0 if new else None), 0
        else:
            index = _index_of(new, current.item_id if current is not None else None)
            if index is None and new:
                index = min(old_index or 0, len(new) - 1)
        if had_posts and self._moved:
            self._fresh |= {post.item_id for post in new if post.item_id not in old_ids}
        self._restore(index, offset)
        self._count_new_above()
        if (current is None) != (self.current is None):
            # The keys that act on a post come or go (the footer shows them).
            self.refresh_bindings()

    def extend(self, posts: Iterable[PostView]) -> int:
        """Add an older page below; return how many items were new."""
        known = {post.item_id for post in self._posts}
        added = [post for post in _unique(posts) if post.item_id not in known]
        if added:
            current = self.highlighted
            scroll = self.scroll_y
            self._posts.extend(added)
            self._rebuild()
            self._restore(current, None)
            self.scroll_to(y=scroll, animate=False, immediate=True)
        return len(added)

    def update_post(self, post: PostView) -> None:
        """Show a fresh copy of one post (after a like) wherever it appears."""
        changed = False
        for index, old in enumerate(self._posts):
            if old.id == post.id:
                fresh = _with_item(post, old)
                self._posts[index] = fresh
                self._draw_at(index)
                changed = True
        if changed:
            self.refresh()

    def on_mount(self) -> None:
        self.set_interval(_RETIME_EVERY, self.retime)

    def retime(self) -> None:
        """Render again what changed with the time, so that relative times ("2m") stay true."""
        self._redraw()

    def _redraw(self) -> None:
        """Draw again each item whose text changed (the time, a folding)."""
        now = ms_now(self._clock)
        for index, post in enumerate(self._posts):
            drawn = self._drawn.get(post.item_id)
            if drawn is None or drawn[0] != self._drawn_from(post, now):
                self._draw_at(index, now)

    def _count_new_above(self) -> None:
        index = self.highlighted
        if index is None:
            self._fresh.clear()
        else:
            # What the reader has moved onto (or past) is no longer new.
            self._fresh -= {post.item_id for post in self._posts[index:]}
        count = len(self._fresh)
        if count != self.new_above:
            self.new_above = count
            self.post_message(self.NewAbove(self, count))

    def _drawn_from(self, post: PostView, now: int) -> _Drawn:
        ago = relative_time(post.timestamp, now)
        return (post, ago, self.unfolded(post), self.showing_why(post))

    def _prompt(self, post: PostView, now: int) -> RenderableType:
        return post_renderable(post, now, unfolded=self.unfolded(post), why=self.showing_why(post))

    def _option(self, post: PostView, now: int) -> Option:
        """The option for ``post``: the one drawn before if nothing it shows changed."""
        source = self._drawn_from(post, now)
        drawn = self._drawn.get(post.item_id)
        if drawn is not None and drawn[0] == source:
            return drawn[1]
        option = Option(self._prompt(post, now), id=post.item_id.hex())
        self._drawn[post.item_id] = (source, option)
        return option

    def _draw_at(self, index: int, now: int | None = None) -> None:
        """Draw the item at ``index`` again, in place."""
        post = self._posts[index]
        now = ms_now(self._clock) if now is None else now
        self.replace_option_prompt_at_index(index, self._prompt(post, now))
        self._drawn[post.item_id] = (self._drawn_from(post, now), self.get_option_at_index(index))

    def _rebuild(self) -> None:
        now = ms_now(self._clock)
        options: list[Option | None] = []
        for post in self._posts:
            options.append(self._option(post, now))
            options.append(None)
        self.set_options(options)
        if len(self._drawn) > len(self._posts):
            kept = {post.item_id for post in self._posts}
            self._drawn = {key: value for key, value in self._drawn.items() if key in kept}

    def _screen_offset(self) -> int | None:
        """How far below the top of the view the highlighted post starts."""
        index = self.highlighted
        if index is None or not self.is_mounted:
            return None
        line = self._index_to_line.get(index)
        return None if line is None else line - round(self.scroll_y)

    def _restore(self, index: int | None, offset: int | None) -> None:
        with self.prevent(OptionList.OptionHighlighted):
            self.highlighted = index
        if index is None or offset is None or not self.is_mounted:
            return
        line = self._index_to_line.get(index)
        if line is not None:
            self.scroll_to(y=max(0, line - offset), animate=False, immediate=True)

    # --- what the reader does ---------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without a post, the keys fall through to the screen (f on a profile).
        if action in ("ask", "toggle_cw", "select", "why"):
            return self.current is not None
        return True

    def action_ask(self, action: str) -> None:
        post = self.current
        if post is not None:
            self.post_message(self.Asked(self, post, action))

    def action_toggle_cw(self) -> None:
        post = self.current
        if post is None or not post.cw or post.hidden or self.highlighted is None:
            return
        self._toggled ^= {post.id}
        self._draw_at(self.highlighted)
        self.scroll_to_highlight()

    def action_why(self) -> None:
        """Show (or hide again) why the highlighted post is in the list."""
        post = self.current
        if post is None or self.highlighted is None:
            return
        self._why ^= {post.item_id}
        self._draw_at(self.highlighted)
        self.scroll_to_highlight()

    @on(OptionList.OptionSelected)
    def _opened(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        post = self.current
        if post is not None:
            self.post_message(self.Opened(self, post))

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # Only the reader moves the highlight with a message (show() keeps quiet).
        event.stop()
        self._moved = True
        self.moves += 1
        self._count_new_above()
        if event.option_index >= len(self._posts) - _NEAR_END:
            self.post_message(self.EndReached(self))

    async def _on_click(self, event: events.Click) -> None:
        # A first click highlights; a click on the highlighted post (or a
        # double click) opens it.
        clicked = event.style.meta.get("option")
        if not isinstance(clicked, int):
            return
        event.prevent_default()
        if clicked == self.highlighted or event.chain > 1:
            self.highlighted = clicked
            self.action_select()
        else:
            self.highlighted = clicked

    def _on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._moved = True
        if self.scroll_y >= self.max_scroll_y - 1:
            self.post_message(self.EndReached(self))


#: What an item was drawn from: the post, its relative time, whether its
#: content warning is open and whether it says why it is in the list.
_Drawn = tuple[PostView, str, bool, bool]


def _unique(posts: Iterable[PostView]) -> list[PostView]:
    seen: set[bytes] = set()
    out: list[PostView] = []
    for post in posts:
        if post.item_id not in seen:
            seen.add(post.item_id)
            out.append(post)
    return out


def _index_of(posts: Sequence[PostView], item_id: bytes | None) -> int | None:
    if item_id is None:
        return None
    for index, post in enumerate(posts):
        if post.item_id == item_id:
            return index
    return None


def _with_item(post: PostView, old: PostView) -> PostView:
    """``post`` as it stands in the list: same item (a repost stays a repost)."""
    return replace(
        post,
        item_id=old.item_id,
        reposted_by=old.reposted_by,
        cursor=old.cursor,
        depth=old.depth,
    )
