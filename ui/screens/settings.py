"""The settings screen (6): how this node runs, read from the node."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from node.views import ClientEvent, SettingsView
from storage.errors import TorvError
from ui.screens.base import TorvScreen

__all__ = ["SettingsScreen", "settings_table"]

_ALGORITHM_NOTE = (
    "reverse chronological over you and the people you follow (more in a later version)"
)


def settings_table(settings: SettingsView, *, embedded: bool) -> Table:
    """The settings as a two-column table."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row(
        "Timeline algorithm", Text.assemble(settings.algorithm, ("  " + _ALGORITHM_NOTE, "dim"))
    )
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


class SettingsScreen(TorvScreen):
    """Settings of the node (change them in config.toml or with command line flags)."""

    def compose(self) -> ComposeResult:
        yield self.nav()
        yield Static(
            "Settings · change them in config.toml in the data directory, or with flags",
            classes="heading",
        )
        with VerticalScroll():
            yield Static("…", id="settings")
        yield Footer(compact=True)

    def wants(self, event: ClientEvent) -> bool:
        return False

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        try:
            settings = await self.torv.ask(self.client.settings)
        except TorvError as exc:
            self.torv.report(exc)
            return
        self.query_one("#settings", Static).update(
            settings_table(settings, embedded=self.client.embedded)
        )
