"""The main screens drawn from fixed data, compared with SVG files in ``snapshots/``.

Every key, timestamp and "now" is fixed (:mod:`tests.ui.fixtures`), so a
screen draws the same on every machine. After a deliberate change to how the
app looks, write the files again and look at them before committing::

    TORV_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/ui/test_snapshots.py
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

from ui.app import TorvApp, make_app

from .fixtures import StoreClient, fixed_client, fixed_clock, run, settle

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TORV_UPDATE_SNAPSHOTS") == "1"
SIZE = (100, 32)


def check(name: str, svg: str, tmp_path: Path) -> None:
    path = SNAPSHOTS / f"{name}.svg"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}: write it with TORV_UPDATE_SNAPSHOTS=1")
    if path.read_text(encoding="utf-8") != svg:
        actual = tmp_path / f"{name}.svg"
        actual.write_text(svg, encoding="utf-8")
        pytest.fail(f"{name} differs from {path}; this run drew {actual}")


async def _keys(pilot: Pilot[Any], *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def _reply_dialog(pilot: Pilot[Any]) -> None:
    await _keys(pilot, "j", "j", "j", "r")
    area = pilot.app.screen.query_one(TextArea)
    area.cursor_blink = False
    await pilot.press(*"Thank you!")
    await settle(pilot)


async def _filtered_thread(pilot: Pilot[Any]) -> None:
    # A word filter hides the owner's first post; in the thread of Ada's
    # reply to it, it stays as a one-line placeholder.
    client = pilot.app.client  # type: ignore[attr-defined]
    assert isinstance(client, StoreClient)
    client.set_filters(["hello"], [])
    await _keys(pilot, "2", "1", "j", "j", "j", "enter")


async def _broken_algorithms(pilot: Pilot[Any]) -> None:
    # An own algorithm that loads but fails, chosen; one that does not load.
    client = pilot.app.client  # type: ignore[attr-defined]
    assert isinstance(client, StoreClient)
    folder = client.local.home.path / "algorithms"
    folder.mkdir()
    (folder / "norank.py").write_text('"""No rank function."""\n', encoding="utf-8")
    (folder / "fails.py").write_text(FAILING_ALGORITHM, encoding="utf-8")
    client.set_algorithm("fails")
    await _keys(pilot, "6")


FAILING_ALGORITHM = """\
\"\"\"Fails while ranking.\"\"\"

NAME = "fails"
DESCRIPTION = "Divides by zero."


def rank(timeline, limit):
    return [1 / 0]
"""

Steps = Callable[[Pilot[Any]], Awaitable[None]]

SCREENS: dict[str, Steps] = {
    "home": lambda pilot: _keys(pilot),
    "home-cw-open": lambda pilot: _keys(pilot, "j", "j", "space"),
    "home-why": lambda pilot: _keys(pilot, "j", "w"),
    "square": lambda pilot: _keys(pilot, "2"),
    "mentions": lambda pilot: _keys(pilot, "3"),
    "network": lambda pilot: _keys(pilot, "4"),
    "profile": lambda pilot: _keys(pilot, "5"),
    "settings": lambda pilot: _keys(pilot, "6"),
    "settings-broken-algorithms": _broken_algorithms,
    "thread-filtered": _filtered_thread,
    "thread": lambda pilot: _keys(pilot, "j", "j", "j", "enter"),
    "profile-forked": lambda pilot: _keys(pilot, "2", "end", "k", "p"),
    "reply": _reply_dialog,
    "help": lambda pilot: _keys(pilot, "question_mark"),
}


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_screen_snapshot(name: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app: TorvApp = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                await SCREENS[name](pilot)
                svg = app.export_screenshot(title=f"torv · {name}")
        check(name, svg, tmp_path)

    run(scenario)
