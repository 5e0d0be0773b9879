"""The settings screen (6): how home is ranked, what is hidden, how the node runs.

The choices made here are private: they are written to ``config.toml`` in the
data directory and never published or sent to a peer. The node's own
settings (hops, seeds, the network key) are shown, to be changed in the file
or with flags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import (
    Checkbox,
    Footer,
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    Static,
)
from textual.widgets.option_list import Option

from node import TorvError
from node.views import ClientEvent, SettingsView
from ui.screens.base import TorvScreen

__all__ = [
    "SQUARE_HOPS",
    "SettingsScreen",
    "algorithm_options",
    "parse_list",
    "people_text",
    "settings_table",
]

#: The square limits offered: ``None`` (everyone) or a number of follow hops.
SQUARE_HOPS: Final = (None, 1, 2, 3)
_CHOSEN: Final = "● "
_NOT_CHOSEN: Final = "○ "


def settings_table(settings: SettingsView, *, embedded: bool) -> Table:
    """The node's settings (not changed here) as a two-column table."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row(
        "Hops",
        Text.assemble(
            str(settings.hops),
            ("  feeds replicated: follows" + (" of follows" * (settings.hops - 1)), "dim"),
        ),
    )
    table.add_row(
        "Square",
        "subscribed (this node relays all public posts)" if settings.square else "not subscribed",
    )
    seeds = "\n".join(settings.seeds) if settings.seeds else Text("none", style="dim")
    table.add_row("Seeds", seeds)
    table.add_row("Network key", settings.network_key)
    table.add_row("Data directory", settings.data_dir)
    table.add_row("Your identity", settings.identity_text)
    table.add_row(
        "Node",
        "runs inside this app"
        if embedded
        else "a separate process (torv run); this app is attached to it",
    )
    return table


def algorithm_options(settings: SettingsView) -> list[Option]:
    """One option per algorithm (the one in use marked); own algorithm files
    that do not load are listed with their error and cannot be chosen."""
    options = []
    width = max((len(name) for name, _ in settings.algorithms), default=0) + 2
    for name, description in settings.algorithms:
        chosen = name == settings.algorithm
        prompt = Text.assemble(
            (_CHOSEN if chosen else _NOT_CHOSEN, "bold green" if chosen else "dim"),
            (name.ljust(width), "bold"),
            (description, "" if chosen else "dim"),
        )
        options.append(Option(prompt, id=f"algorithm-{name}"))
    for name, error in settings.broken_algorithms:
        prompt = Text.assemble(
            ("✗ ", "bold red"), (name.ljust(width), "bold"), ("does not load: " + error, "red")
        )
        options.append(Option(prompt, id=f"broken-{name}", disabled=True))
    return options


def people_text(settings: SettingsView) -> Text:
    """Who is muted and whose reposts are hidden (by the names the owner sees)."""
    out = Text()
    for label, names in (
        ("Muted", settings.muted),
        ("Reposts hidden", settings.reposts_hidden),
    ):
        if out:
            out.append("\n")
        out.append(f"{label}: ", style="bold")
        if names:
            out.append(", ".join(names))
        else:
            out.append("nobody", style="dim")
    out.append("\nm and h on someone's profile (p on a post) change these.", style="dim")
    return out


def parse_list(text: str, *, strip: str = "") -> list[str]:
    """The comma-separated items of ``text``, trimmed, without empty ones or
    repeats; ``strip`` characters are removed from the start of each (``#``)."""
    items: list[str] = []
    for part in text.split(","):
        item = part.strip().lstrip(strip).strip()
        if item and item not in items:
            items.append(item)
    return items


class SettingsScreen(TorvScreen):
    """The reader's choices (saved at once) and the node's settings (shown)."""

    def __init__(self) -> None:
        super().__init__()
        self.view: SettingsView | None = None

    def compose(self) -> ComposeResult:
        yield self.nav()
        yield Static(
            "Settings · saved in config.toml in your data directory; they never leave this"
            " machine",
            classes="heading",
        )
        with VerticalScroll(id="settings-page"):
            yield Static("", id="algorithm-error")
            yield Static("Timeline algorithm", classes="section")
            yield Static(
                "How home (1) is ranked: enter chooses. docs/algorithms.md shows how to"
                " write your own.",
                classes="dim",
            )
            yield OptionList(id="algorithms")
            yield Static("Reading", classes="section")
            yield Checkbox("Fold content warnings (space on a post opens one)", id="fold-cw")
            yield Label("The square (2) shows")
            with RadioSet(id="square-hops"):
                yield RadioButton("everyone", id="hops-none")
                for hops in SQUARE_HOPS[1:]:
                    plural = "" if hops == 1 else "s"
                    yield RadioButton(
                        f"people within {hops} follow step{plural} of you", id=f"hops-{hops}"
                    )
            yield Static("Hidden from every list", classes="section")
            yield Label("Posts containing any of these words (comma-separated; enter saves)")
            yield Input(placeholder="spoiler, election", compact=True, id="filter-words")
            yield Label("Posts with any of these tags")
            yield Input(placeholder="crypto, nsfw", compact=True, id="filter-tags")
            yield Static("", id="people")
            yield Static("Node", classes="section")
            yield Static(
                "Change these in config.toml or with flags of torv run / torv ui.", classes="dim"
            )
            yield Static("…", id="settings")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#algorithms", OptionList).focus()

    def wants(self, event: ClientEvent) -> bool:
        return False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back" and isinstance(self.focused, Input):
            return True
        return super().check_action(action, parameters)

    def action_back(self) -> None:
        # escape leaves a filter field (where 1-6 and q are letters typed).
        if isinstance(self.focused, Input):
            self.query_one("#algorithms", OptionList).focus()
            return
        super().action_back()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        try:
            settings = await self.torv.ask(self.client.settings)
        except TorvError as exc:
            self.torv.report(exc)
            return
        if self.is_attached:
            self.show(settings)
            self.torv.settings_changed(settings)

    def show(self, settings: SettingsView) -> None:
        """Show ``settings`` (widgets the reader changes are set without saving again)."""
        previous, self.view = self.view, settings
        error = self.query_one("#algorithm-error", Static)
        error.display = settings.algorithm_error is not None
        if settings.algorithm_error is not None:
            error.update(
                Text.assemble(
                    (f"⚠ Your algorithm {settings.algorithm} failed", "bold"),
                    ("; home shows latest instead.\n", "bold"),
                    settings.algorithm_error,
                )
            )
        algorithms = self.query_one("#algorithms", OptionList)
        highlighted = algorithms.highlighted
        with algorithms.prevent(OptionList.OptionHighlighted):
            algorithms.set_options(algorithm_options(settings))
            names = [name for name, _ in settings.algorithms]
            if highlighted is None and settings.algorithm in names:
                highlighted = names.index(settings.algorithm)
            algorithms.highlighted = highlighted
        fold = self.query_one("#fold-cw", Checkbox)
        with fold.prevent(Checkbox.Changed):
            fold.value = settings.fold_cw
        hops = self.query_one(f"#hops-{settings.square_hops or 'none'}", RadioButton)
        if not hops.value:
            with self.query_one(RadioSet).prevent(RadioSet.Changed, RadioButton.Changed):
                hops.value = True
        # What the reader typed and did not save yet stays, unless the saved
        # filters changed.
        if previous is None or previous.filter_words != settings.filter_words:
            self.query_one("#filter-words", Input).value = ", ".join(settings.filter_words)
        if previous is None or previous.filter_tags != settings.filter_tags:
            self.query_one("#filter-tags", Input).value = ", ".join(settings.filter_tags)
        self.query_one("#people", Static).update(people_text(settings))
        self.query_one("#settings", Static).update(
            settings_table(settings, embedded=self.client.embedded)
        )

    # --- what the reader changes ------------------------------------------------------------

    @on(OptionList.OptionSelected, "#algorithms")
    def _algorithm_chosen(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id or ""
        if not option_id.startswith("algorithm-"):
            return
        name = option_id.removeprefix("algorithm-")
        if self.view is not None and name == self.view.algorithm:
            self.notify(f"Home is ranked by {name} already.")
            return
        self._save(
            self.client.set_algorithm,
            name,
            done=f"Home is now ranked by {name}.",
        )

    @on(Checkbox.Changed, "#fold-cw")
    def _fold_changed(self, event: Checkbox.Changed) -> None:
        if self.view is None or event.value == self.view.fold_cw:
            return
        self._save(
            self.client.set_fold_cw,
            event.value,
            done="Content warnings are folded until you open them."
            if event.value
            else "Content warnings show the text under them.",
        )

    @on(RadioSet.Changed, "#square-hops")
    def _hops_changed(self, event: RadioSet.Changed) -> None:
        hops = SQUARE_HOPS[event.index]
        if self.view is None or hops == self.view.square_hops:
            return
        self._save(
            self.client.set_square_hops,
            hops,
            done="The square shows everyone."
            if hops is None
            else f"The square shows people within {hops} follow step{'' if hops == 1 else 's'}.",
        )

    @on(Input.Submitted, "#filter-words, #filter-tags")
    def _filters_submitted(self) -> None:
        words = parse_list(self.query_one("#filter-words", Input).value)
        tags = parse_list(self.query_one("#filter-tags", Input).value, strip="#")
        if self.view is not None and (
            tuple(word.casefold() for word in words) == self.view.filter_words
            and tuple(tag.casefold() for tag in tags) == self.view.filter_tags
        ):
            self.notify("The filters are as they were.")
            return
        if words or tags:
            done = (
                f"Filters saved: posts with any of {_count(words, 'word')} or"
                f" {_count(tags, 'tag')} are hidden."
            )
        else:
            done = "Filters cleared: no words or tags hide posts."
        self._save(self.client.set_filters, words, tags, done=done)

    @work(group="settings-change")
    async def _save(self, change: Callable[..., None], *args: object, done: str) -> None:
        """Call ``change`` (a method of the client) with ``args``, say ``done``,
        and show the settings as they are now (after a refused change: as they were)."""
        try:
            await self.torv.ask(change, *args)
        except TorvError as exc:
            self.torv.report(exc)
        else:
            self.notify(done)
        self._load()


def _count(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
