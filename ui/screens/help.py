"""The help screen (?): every key, by where it works."""

from __future__ import annotations

from typing import ClassVar, Final

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["KEYS", "HelpScreen"]

#: (section, [(keys, what they do)]): what the help screen lists.
KEYS: Final = (
    (
        "Anywhere",
        (
            ("1 … 6", "home, square, mentions, network, your profile, settings"),
            ("n", "write a new post"),
            ("/", "search: #tag or words"),
            ("ctrl+p", "command palette"),
            ("escape", "back"),
            ("?", "this help"),
            ("q", "quit"),
        ),
    ),
    (
        "On a post",
        (
            ("j k ↑ ↓", "move"),
            ("enter / click", "open the thread"),
            ("space", "show or hide the text behind a content warning"),
            ("w", "why am I seeing this: the reason it is in the list"),
            ("r", "reply"),
            ("l", "like (♥)"),
            ("b", "repost"),
            ("f", "follow or unfollow the author"),
            ("p", "the author's profile"),
        ),
    ),
    (
        "On a profile",
        (
            ("f", "follow or unfollow"),
            ("x", "block or unblock"),
            ("m", "mute or unmute: hidden everywhere (only you know)"),
            ("h", "hide or show their reposts (only you know)"),
            ("e", "edit your name and bio (your own profile)"),
        ),
    ),
    (
        "Writing a post",
        (
            ("ctrl+s", "post"),
            ("tab", "to the content warning field"),
            ("escape", "cancel"),
        ),
    ),
    (
        "Settings",
        (
            ("enter", "choose the highlighted timeline algorithm"),
            ("space", "tick or untick; choose a square limit"),
            ("tab", "next field"),
            ("enter", "in a filter field: save the filters (escape leaves it)"),
        ),
    ),
    (
        "Network",
        (("enter", "profile of the highlighted peer"),),
    ),
)


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True, justify="right")
    table.add_column()
    for index, (section, keys) in enumerate(KEYS):
        if index:
            table.add_row("", "")
        table.add_row("", f"[b]{section}[/b]")
        for key, what in keys:
            table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    """Keys of the app; any of escape, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="help"):
            yield Static("torv · keys", classes="dialog-title")
            yield Static(help_table())
            yield Static(
                "Names with ~ are names people chose for themselves; anybody can pick any name.",
                classes="dim",
            )

    def action_close(self) -> None:
        self.dismiss(None)
