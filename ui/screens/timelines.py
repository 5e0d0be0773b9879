"""The three timelines: home (1), square (2) and mentions (3)."""

from __future__ import annotations

from node.views import PostView, SettingsView
from ui.screens.base import SETTINGS_RECHECK, PostsScreen

__all__ = ["HomeScreen", "MentionsScreen", "SquareScreen", "home_heading"]


class HomeScreen(PostsScreen):
    """The owner's timeline, ranked by the algorithm chosen in the settings
    (``latest``: the people the owner follows and the owner, newest first).

    When the chosen algorithm fails, the node ranks with ``latest``; the app
    says so once per distinct error (:meth:`TorvApp.settings_changed`).
    """

    HEADING = "Home · you and the people you follow, newest first"
    EMPTY = (
        "Nothing here yet.\n\n"
        "Press n to write your first post. To follow people, look around the square (2),\n"
        "open someone's profile with p and press f."
    )

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.home(limit, before)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        settings = self.torv.settings
        if settings is not None:
            self.settings_changed(settings)
        self.torv.check_settings()

    def after_load(self) -> None:
        # The algorithm may start failing at any time (its file changed, or
        # the data it meets): look again now and then.
        self.torv.check_settings(within=SETTINGS_RECHECK)

    def settings_changed(self, settings: SettingsView) -> None:
        self.set_heading(home_heading(settings))


def home_heading(settings: SettingsView) -> str:
    """What the line under the tabs says about how home is ranked."""
    name = settings.algorithm
    if settings.algorithm_error is not None:
        return f"Home · your algorithm {name} failed (Settings, 6, says why): showing latest"
    if name == "latest":
        return HomeScreen.HEADING
    description = dict(settings.algorithms).get(name, "").rstrip(".")
    if not description:
        return f"Home · ranked by {name}"
    if description[1:2].islower():
        description = description[0].lower() + description[1:]
    return f"Home · {name}: {description}"


class SquareScreen(PostsScreen):
    """Every public post this node has seen."""

    HEADING = "Square · every public post this node has seen"
    EMPTY = "The square is quiet: no posts have reached this node yet."

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.square(limit, before)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        settings = self.torv.settings
        if settings is not None:
            self.settings_changed(settings)

    def settings_changed(self, settings: SettingsView) -> None:
        hops = settings.square_hops
        if hops is None:
            self.set_heading(self.HEADING)
        else:
            steps = "1 follow step" if hops == 1 else f"{hops} follow steps"
            self.set_heading(f"Square · public posts of people within {steps} of you")


class MentionsScreen(PostsScreen):
    """Posts that mention the owner and replies to the owner's posts."""

    HEADING = "Mentions · posts that mention you and replies to you"
    EMPTY = "No mentions or replies yet."

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.mentions(limit, before)
