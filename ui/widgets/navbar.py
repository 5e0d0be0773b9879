"""The bar at the top: the six screens (current one marked) and the peer count."""

from __future__ import annotations

from typing import Final

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

__all__ = ["SCREENS", "NavBar"]

#: Mode name, key and label of the six main screens, in order.
SCREENS: Final = (
    ("home", "1", "Home"),
    ("square", "2", "Square"),
    ("mentions", "3", "Mentions"),
    ("network", "4", "Network"),
    ("profile", "5", "Profile"),
    ("settings", "6", "Settings"),
)


class NavBar(Widget):
    """Tabs for the main screens (a click switches) and how many peers are connected."""

    DEFAULT_CSS = """
    NavBar {
        height: 1;
        background: $panel;
        color: $foreground;
        link-style: none;
        link-color: $foreground;
        link-background-hover: $accent 40%;
        link-style-hover: bold;
    }
    """

    peers: reactive[int | None] = reactive(None)

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def render(self) -> Content:
        parts = [Content.from_markup("[b reverse] torv [/]")]
        for mode, key, label in SCREENS:
            style = f"@click=app.go('{mode}')"
            if mode == self.current:
                style = f"b reverse {style}"
            parts.append(Content.from_markup(f" [{style}] {key} {label} [/]"))
        bar = Content("").join(parts)
        if self.peers is not None:
            dot = "$success" if self.peers else "$warning"
            plural = "" if self.peers == 1 else "s"
            status = Content.from_markup(f"[{dot}]●[/] {self.peers} peer{plural} ")
            pad = max(1, self.size.width - bar.cell_length - status.cell_length)
            bar = Content("").join([bar, Content(" " * pad), status])
        return bar
