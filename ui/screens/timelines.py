"""The three timelines: home (1), square (2) and mentions (3)."""

from __future__ import annotations

from node.views import PostView
from ui.screens.base import PostsScreen

__all__ = ["HomeScreen", "MentionsScreen", "SquareScreen"]


class HomeScreen(PostsScreen):
    """Posts and reposts of the people the owner follows, and the owner's own."""

    HEADING = "Home · you and the people you follow, newest first"
    EMPTY = (
        "Nothing here yet.\n\n"
        "Press n to write your first post. To follow people, look around the square (2),\n"
        "open someone's profile with p and press f."
    )

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.home(limit, before)


class SquareScreen(PostsScreen):
    """Every public post this node has seen."""

    HEADING = "Square · every public post this node has seen"
    EMPTY = "The square is quiet: no posts have reached this node yet."

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.square(limit, before)


class MentionsScreen(PostsScreen):
    """Posts that mention the owner and replies to the owner's posts."""

    HEADING = "Mentions · posts that mention you and replies to you"
    EMPTY = "No mentions or replies yet."

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.mentions(limit, before)
