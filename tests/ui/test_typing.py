"""Keys that arrive faster than the app handles them (a fast typist, a loaded machine)."""

from __future__ import annotations

import threading
from pathlib import Path

from textual import events

from node.views import PostView
from ui.app import make_app
from ui.screens.base import PostsScreen
from ui.screens.compose import ComposeScreen
from ui.widgets.post_list import PostList

from .fixtures import StoreClient, fixed_client, fixed_clock, run, running_node, wait_until

SIZE = (100, 40)


def _key(char: str) -> events.Key:
    names = {" ": "space", ",": "comma", "!": "exclamation_mark"}
    return events.Key(names.get(char, char), char)


def test_ctrl_s_posts_every_character_typed_before_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a", name="Al") as client:
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await pilot.press("n")
                await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen))
                await pilot.pause()
                # All at once, as a terminal delivers a burst: nothing waits in between.
                for char in "Nice one, agreed!":
                    app.post_message(_key(char))
                app.post_message(events.Key("ctrl+s", "\x13"))
                await wait_until(pilot, lambda: not isinstance(app.screen, ComposeScreen))
                assert [post.text for post in client.home()] == ["Nice one, agreed!"]

    run(scenario)


class _HeldClient(StoreClient):
    """Answers ``home`` only once :attr:`release` is set (while :attr:`hold` is set)."""

    def __init__(self, client: StoreClient) -> None:
        super().__init__(client.local, client._people)
        self.hold = threading.Event()
        self.release = threading.Event()

    def home(self, limit: int = 50, before: tuple[int, int] | None = None) -> list[PostView]:
        if self.hold.is_set():
            self.release.wait(10)
        return super().home(limit, before)


def test_a_move_during_a_reload_wins_over_the_post_to_select(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as fixed:
            client = _HeldClient(fixed)
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                screen = app.screen
                assert isinstance(screen, PostsScreen)
                await wait_until(pilot, lambda: screen.loaded)
                posts = screen.query_one(PostList)
                await pilot.press("j")
                assert posts.highlighted == 1
                # The app asks to highlight the newest post after the next load
                # (as after posting); the reader moves while the node answers.
                client.hold.set()
                screen.select_next_load(posts.posts[0].item_id)
                screen.reload()
                await pilot.pause()
                await pilot.press("j")
                client.release.set()
                await wait_until(pilot, lambda: not any(w.is_running for w in app.workers))
                assert posts.highlighted == 2

    run(scenario)
