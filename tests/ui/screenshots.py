"""Draw the README's screenshots from the fixed data of the snapshot tests.

Run from the repository root::

    .venv/bin/python -m tests.ui.screenshots

It writes ``docs/screenshot-home.svg`` and ``docs/screenshot-network.svg``.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path

from node.views import NetworkView
from ui.app import make_app

from .fixtures import NOW, StoreClient, fixed_home, settle

DOCS = Path(__file__).resolve().parents[2] / "docs"
SIZE = (120, 36)


class _Ticking(StoreClient):
    """Fixed data whose entry counters grow by the second, so rates show."""

    ticks = 0

    def clock(self) -> float:
        return NOW / 1000 + self.ticks

    def network(self) -> NetworkView:
        self.ticks += 1
        view = super().network()
        return replace(
            view,
            entries_in=view.entries_in + 42 * self.ticks,
            entries_out=view.entries_out + 9 * self.ticks,
        )


async def _shoot(client: _Ticking) -> dict[str, str]:
    app = make_app(client, clock=client.clock)
    shots: dict[str, str] = {}
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("j")
        await settle(pilot)
        shots["home"] = app.export_screenshot(title="torv · home")
        await pilot.press("4")
        await settle(pilot)
        await pilot.pause(1.3)  # one more refresh: the rates need two readings
        await settle(pilot)
        shots["network"] = app.export_screenshot(title="torv · network")
    return shots


def main() -> None:
    from node.local import LocalNode

    with tempfile.TemporaryDirectory() as directory:
        home, people = fixed_home(Path(directory))
        with LocalNode.open(home) as local:
            shots = asyncio.run(_shoot(_Ticking(local, people)))
    for name, svg in shots.items():
        path = DOCS / f"screenshot-{name}.svg"
        path.write_text(svg, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
