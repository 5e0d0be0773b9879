"""The network screen (4): peers, DHT contacts, catch-up progress, entry rates."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Label, ProgressBar, Static

from node import TorvError
from node.identity import short_feed_id
from node.views import ClientEvent, NetworkView, SyncView
from ui.format import duration, rate
from ui.screens.base import TorvScreen

__all__ = ["NetworkScreen", "SyncRow"]

#: Seconds between two refreshes while the screen is shown.
REFRESH_EVERY = 1.0

_PEER_COLUMNS = (
    ("name", "Name"),
    ("id", "Id"),
    ("address", "Address"),
    ("dir", "Dir"),
    ("score", "Score"),
    ("uptime", "Up"),
)


class SyncRow(Horizontal):
    """Catch-up of one feed: its name, a progress bar and ``have/target``."""

    def __init__(self, sync: SyncView) -> None:
        super().__init__(classes="sync-row")
        self.sync = sync

    def compose(self) -> ComposeResult:
        yield Label(self.sync.name, classes="sync-name")
        yield ProgressBar(total=max(1, self.sync.target), show_eta=False, classes="sync-bar")
        yield Label("", classes="sync-count")

    def on_mount(self) -> None:
        self.show(self.sync)

    def show(self, sync: SyncView) -> None:
        self.sync = sync
        self.query_one(".sync-name", Label).update(sync.name)
        total = max(1, sync.target)
        self.query_one(ProgressBar).update(total=total, progress=min(sync.have, total))
        self.query_one(".sync-count", Label).update(f"{sync.have}/{sync.target}")


class NetworkScreen(TorvScreen):
    """Who this node talks to and how far it has caught up; refreshed every second."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "peer_profile", "Profile", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[float, int, int] | None = None
        self._timer: Timer | None = None
        self.view: NetworkView | None = None

    def compose(self) -> ComposeResult:
        yield self.nav()
        yield Static("Network", classes="heading", id="heading")
        with VerticalScroll(id="network"):
            yield Static("…", id="summary")
            yield Label("Peers", classes="section", id="peers-title")
            table: DataTable[str] = DataTable(id="peers", cursor_type="row", zebra_stripes=True)
            yield table
            yield Label("Catching up", classes="section", id="sync-title")
            yield Vertical(id="sync")
            yield Static("", id="sync-empty", classes="dim")
            yield Label("DHT contacts", classes="section", id="dht-title")
            yield Static("", id="dht")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#peers", DataTable)
        for key, label in _PEER_COLUMNS:
            table.add_column(label, key=key)
        self._timer = self.set_interval(REFRESH_EVERY, self.reload, pause=True)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self._timer is not None:
            self._timer.resume()

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def wants(self, event: ClientEvent) -> bool:
        return event.kind in ("peer-up", "peer-down", "sync")

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        try:
            view = await self.torv.ask(self.client.network)
        except TorvError as exc:
            self.torv.report(exc)
            return
        self.show(view)

    def show(self, view: NetworkView) -> None:
        """Fill the screen from ``view`` (rates from the change since the last one)."""
        self.view = view
        now = self.torv.clock()
        rates = ("—", "—")
        if self._last is not None:
            then, entries_in, entries_out = self._last
            rates = (
                rate(view.entries_in - entries_in, now - then),
                rate(view.entries_out - entries_out, now - then),
            )
        if self._last is None or now > self._last[0]:
            self._last = (now, view.entries_in, view.entries_out)
        summary = Text()
        summary.append("You ", style="bold")
        summary.append(short_feed_id(view.identity), style="dim")
        summary.append(f"  listening on {view.listen} · DHT on {view.dht}\n")
        summary.append(
            f"{len(view.peers)} peer{'' if len(view.peers) == 1 else 's'} · "
            f"{view.topics} topic{'' if view.topics == 1 else 's'} · "
            f"{view.mesh_links} mesh link{'' if view.mesh_links == 1 else 's'}\n"
        )
        summary.append("entries in ", style="bold")
        summary.append(f"{rates[0]} ({view.entries_in} since start)  ")
        summary.append("out ", style="bold")
        summary.append(f"{rates[1]} ({view.entries_out} since start)")
        self.query_one("#summary", Static).update(summary)
        self.query_one("#peers-title", Label).update(f"Peers ({len(view.peers)})")
        self._show_peers(view)
        self._show_sync(view)
        contacts = view.dht_contacts
        self.query_one("#dht-title", Label).update(f"DHT contacts ({len(contacts)})")
        self.query_one("#dht", Static).update(
            "  ".join(contacts) if contacts else "(none yet: the DHT fills as peers are met)"
        )
        self.torv.set_peer_count(len(view.peers))

    def _show_peers(self, view: NetworkView) -> None:
        table: DataTable[str] = self.query_one("#peers", DataTable)
        wanted = {peer.identity.hex(): peer for peer in view.peers}
        for row_key in list(table.rows):
            if row_key.value not in wanted:
                table.remove_row(row_key)
        present = {row_key.value for row_key in table.rows}
        for key, peer in wanted.items():
            cells = {
                "name": peer.name,
                "id": short_feed_id(peer.identity),
                "address": peer.address,
                "dir": "out" if peer.outbound else "in",
                "score": f"{peer.score:.1f}",
                "uptime": duration(peer.uptime),
            }
            if key in present:
                for column, value in cells.items():
                    table.update_cell(key, column, value)
            else:
                table.add_row(*(cells[column] for column, _ in _PEER_COLUMNS), key=key)
        table.display = bool(view.peers)

    def _show_sync(self, view: NetworkView) -> None:
        box = self.query_one("#sync", Vertical)
        rows = {row.sync.feed: row for row in box.query(SyncRow)}
        wanted = {sync.feed for sync in view.sync}
        for feed, row in rows.items():
            if feed not in wanted:
                row.remove()
        new: list[SyncRow] = []
        for sync in view.sync:
            if sync.feed in rows:
                rows[sync.feed].show(sync)
            else:
                new.append(SyncRow(sync))
        if new:
            box.mount_all(new)
        self.query_one("#sync-empty", Static).update(
            "" if view.sync else "(nothing to catch up on: every feed followed is up to date)"
        )

    @on(DataTable.RowSelected, "#peers")
    def action_peer_profile(self) -> None:
        table: DataTable[str] = self.query_one("#peers", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key is not None:
            self.torv.show_profile(bytes.fromhex(key))
