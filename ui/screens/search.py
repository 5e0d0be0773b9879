"""Search (/): posts by #tag or by words in their text."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from node.views import ClientEvent, PostView
from ui.screens.base import PostsScreen
from ui.widgets.post_list import PostList

__all__ = ["SearchScreen"]

#: At most this many results.
RESULTS = 100


class SearchScreen(PostsScreen):
    """A search field and the posts it finds, newest first."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("slash", "focus_query", "Search", show=False)]
    HEADING = "Search · #tag finds tagged posts; anything else, posts containing the words"
    EMPTY = "Type #tag or some words and press enter."
    PAGED = False
    AUTO_FOCUS = "#query"

    def __init__(self, query: str = "") -> None:
        super().__init__()
        self.query_text = query

    def compose_top(self) -> ComposeResult:
        yield Input(self.query_text, placeholder="#tag or words, then enter", id="query")

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        if not self.query_text.strip():
            return []
        return self.client.search(self.query_text, RESULTS)

    def wants(self, event: ClientEvent) -> bool:
        return bool(self.query_text.strip()) and event.kind == "entry"

    @on(Input.Submitted, "#query")
    def _submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value
        self.reload()
        self.query_one(PostList).focus()

    def after_load(self) -> None:
        query = self.query_text.strip()
        found = bool(self.post_list.posts)
        self.query_one("#empty", Static).update(
            f"Nothing found for {query!r}." if query and not found else self.EMPTY
        )
        if not found:
            self.query_one("#query", Input).focus()

    def action_focus_query(self) -> None:
        self.query_one("#query", Input).focus()
