"""A thread: the root post and every reply held here, indented by depth."""

from __future__ import annotations

from node.views import PostView
from ui.screens.base import PostsScreen

__all__ = ["ThreadScreen"]


class ThreadScreen(PostsScreen):
    """The thread around one entry, in reading order; that entry is highlighted."""

    HEADING = "Thread · replies are indented under what they answer"
    EMPTY = "This post is not held here."
    PAGED = False

    def __init__(self, entry_id: bytes) -> None:
        super().__init__()
        self.entry_id = entry_id
        self.select_next_load(entry_id)

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.thread(self.entry_id)
