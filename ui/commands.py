"""The app's actions in the command palette (ctrl+p)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from ui.app import TorvApp

__all__ = ["TorvCommands"]


class TorvCommands(Provider):
    """Go to a screen, write, search, get help: everything the keys do, by name."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app = cast("TorvApp", self.app)
        commands: list[tuple[str, str, Callable[[], object]]] = [
            ("Home", "your timeline (1)", partial(app.action_go, "home")),
            ("Square", "every public post seen (2)", partial(app.action_go, "square")),
            ("Mentions", "mentions of you and replies (3)", partial(app.action_go, "mentions")),
            ("Network", "peers, DHT, sync progress (4)", partial(app.action_go, "network")),
            ("My profile", "your profile and posts (5)", partial(app.action_go, "profile")),
            ("Settings", "how this node runs (6)", partial(app.action_go, "settings")),
            ("New post", "write a post (n)", app.action_compose),
            ("Search", "find posts by #tag or words (/)", app.action_search),
            (
                "Why am I seeing this",
                "the reason the highlighted post is in this list (w)",
                app.action_why,
            ),
            ("Help", "every key (?)", app.action_help),
            ("Quit", "leave torv (q)", app.exit),
        ]
        return commands

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
