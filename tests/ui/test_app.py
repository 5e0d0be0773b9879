"""The app driven headless (``App.run_test`` and ``Pilot``) against real nodes on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.widgets import Input

from node.views import ClientEvent, NetworkView, PostView
from ui.app import TorvApp, make_app
from ui.screens.base import PAGE, PostsScreen
from ui.screens.network import NetworkScreen
from ui.screens.profile import ProfileScreen
from ui.screens.settings import SettingsScreen
from ui.screens.thread import ThreadScreen
from ui.screens.timelines import HomeScreen, MentionsScreen, SquareScreen
from ui.widgets.navbar import NavBar
from ui.widgets.post_list import PostList

from .fixtures import fixed_client, fixed_clock, rendered, run, running_node, settle, wait_until

SIZE = (100, 40)


class Notes:
    """Collects the app's notifications (the message hook sees every message)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.seen.append((message.notification.severity, message.notification.message))

    def text(self) -> str:
        return "\n".join(message for _, message in self.seen)


def posts_of(app: TorvApp) -> PostList:
    screen = app.screen
    assert isinstance(screen, PostsScreen), screen
    return screen.post_list


def texts(app: TorvApp) -> list[str]:
    return [post.text for post in posts_of(app).posts]


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, TorvApp)
    await wait_until(pilot, lambda: isinstance(app.screen, PostsScreen) and app.screen.loaded)


def test_a_new_post_appears_on_home_and_says_it_will_sync(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a", name="Al") as client:
            app = make_app(client)
            notes = Notes()
            async with app.run_test(size=SIZE, message_hook=notes) as pilot:
                await loaded(pilot)
                assert texts(app) == []
                await pilot.press("n")
                await pilot.press(*"Hello, square")
                await pilot.press("ctrl+s")
                await wait_until(pilot, lambda: texts(app) == ["Hello, square"])
                assert isinstance(app.screen, HomeScreen)
                assert "will sync when peers are reachable" in notes.text()
                assert "you" in rendered(posts_of(app), 0)

    run(scenario)


def test_a_reply_shows_what_it_answers_and_sits_at_depth_one_in_the_thread(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a", name="Al") as client:
            root = client.post("What do you think of the square?")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                await pilot.press("r")
                await pilot.pause()
                await pilot.press(*"It is lively", "ctrl+s")
                await wait_until(pilot, lambda: len(texts(app)) == 2)
                reply = posts_of(app).current
                assert reply is not None
                assert reply.text == "It is lively"
                assert reply.reply_to == root
                assert "↳ reply to you" in rendered(posts_of(app), 0)
                await pilot.press("enter")
                await wait_until(
                    pilot, lambda: isinstance(app.screen, ThreadScreen) and app.screen.loaded
                )
                thread = [(post.text, post.depth) for post in posts_of(app).posts]
                assert thread == [("What do you think of the square?", 0), ("It is lively", 1)]
                assert posts_of(app).current == posts_of(app).posts[1]
                await pilot.press("escape")
                assert isinstance(app.screen, HomeScreen)

    run(scenario)


def test_like_shows_the_count_and_the_liked_marker(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a", name="Al") as client:
            client.post("Like me")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                await pilot.press("l")

                def liked() -> bool:
                    post = posts_of(app).current
                    return post is not None and post.liked

                await wait_until(pilot, liked)
                post = posts_of(app).current
                assert post is not None
                assert post.reactions == {"♥": 1}
                assert "♥ 1 · liked" in rendered(posts_of(app), 0)

    run(scenario)


def test_follow_from_a_profile_brings_their_posts_home_live(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "b", name="Bea") as bea:
            host, port = bea.network().listen.rsplit(":", 1)
            bea.post("Bea was here before")
            with running_node(tmp_path / "a", name="Al", bootstrap=((host, int(port)),)) as client:
                app = make_app(client)
                async with app.run_test(size=SIZE) as pilot:
                    await loaded(pilot)
                    await wait_until(pilot, lambda: app.peer_count == 1)
                    app.show_profile(bea.me)
                    await wait_until(
                        pilot,
                        lambda: (
                            isinstance(app.screen, ProfileScreen)
                            and app.screen.profile is not None
                        ),
                    )
                    await pilot.press("f")

                    def following() -> bool:
                        screen = app.screen
                        assert isinstance(screen, ProfileScreen)
                        return screen.profile is not None and screen.profile.i_follow

                    await wait_until(pilot, following)
                    await pilot.press("x")

                    def blocked() -> bool:
                        screen = app.screen
                        assert isinstance(screen, ProfileScreen)
                        return screen.profile is not None and screen.profile.i_block

                    await wait_until(pilot, blocked)
                    await pilot.press("x")
                    await wait_until(pilot, lambda: not blocked())
                    await pilot.press("1")
                    await wait_until(pilot, lambda: "Bea was here before" in texts(app))
                    # A new post of Bea's arrives without a key being pressed.
                    bea.post("Live from Bea")
                    await wait_until(pilot, lambda: "Live from Bea" in texts(app))
                    assert texts(app)[0] == "Live from Bea"

    run(scenario)


def test_new_posts_above_do_not_move_the_reader(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            for n in range(5):
                client.post(f"post {n}")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                # Before the reader moves, the list stays on the newest post.
                client.post("early news")
                await wait_until(pilot, lambda: "early news" in texts(app))
                top = posts_of(app).current
                assert top is not None
                assert top.text == "early news"
                assert posts_of(app).new_above == 0
                await pilot.press("j", "j", "j")
                reading = posts_of(app).current
                assert reading is not None
                assert reading.text == "post 2"
                client.post("news")
                await wait_until(pilot, lambda: "news" in texts(app))
                assert posts_of(app).current == reading
                assert posts_of(app).new_above == 1
                heading = app.screen.query_one("#heading")
                await wait_until(pilot, lambda: "1 new post above" in str(heading.render()))
                await pilot.press("k", "k", "k", "k")
                await wait_until(pilot, lambda: "new post" not in str(heading.render()))
                assert posts_of(app).new_above == 0

    run(scenario)


def test_the_end_of_the_list_loads_the_next_page(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            for n in range(PAGE + 7):
                client.post(f"post {n}")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                assert len(texts(app)) == PAGE
                await pilot.press("end")
                await wait_until(pilot, lambda: len(texts(app)) == PAGE + 7)
                assert texts(app)[-1] == "post 0"
                assert posts_of(app).current is not None

    run(scenario)


def test_a_content_warning_is_folded_until_opened(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            client.post("The butler did it.", cw="film ending")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                folded = rendered(posts_of(app), 0)
                assert "CW: film ending" in folded
                assert "butler" not in folded
                await pilot.press("space")
                assert "The butler did it." in rendered(posts_of(app), 0)
                await pilot.press("space")
                assert "butler" not in rendered(posts_of(app), 0)

    run(scenario)


def test_keys_one_to_six_switch_screens_and_escape_goes_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            client.post("something to open")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                for key, screen in (
                    ("2", SquareScreen),
                    ("3", MentionsScreen),
                    ("4", NetworkScreen),
                    ("5", ProfileScreen),
                    ("6", SettingsScreen),
                    ("1", HomeScreen),
                ):
                    await pilot.press(key)
                    assert type(app.screen) is screen
                await wait_until(pilot, lambda: texts(app) == ["something to open"])
                await pilot.press("enter")
                await wait_until(pilot, lambda: isinstance(app.screen, ThreadScreen))
                await pilot.press("2", "1")
                assert isinstance(app.screen, ThreadScreen)  # each screen keeps its stack
                await pilot.press("1")
                assert isinstance(app.screen, HomeScreen)  # its key again: back to the top
                await pilot.press("question_mark")
                assert app.screen.id is None
                assert "Help" in type(app.screen).__name__
                await pilot.press("escape", "slash")
                assert "Search" in type(app.screen).__name__
                await pilot.press(*"something", "enter")
                await wait_until(pilot, lambda: texts(app) == ["something to open"])

    run(scenario)


def test_errors_become_notifications_not_tracebacks(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            app = make_app(client)
            notes = Notes()
            async with app.run_test(size=SIZE, message_hook=notes) as pilot:
                await loaded(pilot)
                app.show_thread(bytes(32))
                await wait_until(pilot, lambda: any(s == "error" for s, _ in notes.seen))
                assert isinstance(app.screen, ThreadScreen)
                await pilot.press("escape", "5")
                await wait_until(
                    pilot,
                    lambda: (
                        isinstance(app.screen, ProfileScreen) and app.screen.profile is not None
                    ),
                )
                await pilot.press("f")  # following oneself: not offered
                await pilot.pause()
                assert app.is_running

    run(scenario)


def test_the_network_screen_lists_peers_and_sync(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "b", name="Bea") as bea:
            host, port = bea.network().listen.rsplit(":", 1)
            for n in range(3):
                bea.post(f"bea {n}")
            with running_node(tmp_path / "a", name="Al", bootstrap=((host, int(port)),)) as client:
                client.follow(bea.me)
                app = make_app(client)
                async with app.run_test(size=SIZE) as pilot:
                    await pilot.press("4")
                    screen = app.screen
                    assert isinstance(screen, NetworkScreen)
                    await wait_until(
                        pilot, lambda: screen.view is not None and len(screen.view.peers) == 1
                    )
                    # The peer may show before its profile has synced: then
                    # by its short id, and by name at a later refresh.
                    await wait_until(
                        pilot,
                        lambda: (
                            "~Bea" in str(screen.query_one("#peers").get_row_at(0))  # type: ignore[attr-defined]
                        ),
                    )
                    await wait_until(
                        pilot,
                        lambda: (
                            screen.view is not None
                            and any(s.name == "~Bea" and s.have == 4 for s in screen.view.sync)
                        ),
                    )
                    await pilot.press("enter")
                    await wait_until(pilot, lambda: isinstance(app.screen, ProfileScreen))
                    assert isinstance(app.screen, ProfileScreen)
                    assert app.screen.feed == bea.me

    run(scenario)


def test_the_command_palette_lists_the_screens(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                await pilot.press("ctrl+p")
                await pilot.press(*"Square")
                await pilot.pause(0.5)
                await pilot.press("enter")
                await wait_until(pilot, lambda: isinstance(app.screen, SquareScreen))

    run(scenario)


def test_a_peer_that_comes_up_while_the_first_network_view_is_read_is_counted(
    tmp_path: Path,
) -> None:
    # The view is read first; then a peer comes up, and the app hears of it
    # before the (older) view reaches it. The view must not undo the news.
    newcomer = bytes(range(32))

    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            read_view = client.network

            def network() -> NetworkView:
                view = read_view()
                client.emit(ClientEvent("peer-up", peer=newcomer))
                deadline = time.monotonic() + 15
                while app.peer_count != 1:  # the app has taken the event in
                    assert time.monotonic() < deadline, "the app never heard of the peer"
                    time.sleep(0.01)
                return view

            client.network = network  # type: ignore[method-assign]
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: app.peer_count not in (None, 1))
                assert app.peer_count == len(read_view().peers) + 1
                await settle(pilot)  # no call to the store is left when it closes

    run(scenario)


def test_quitting_while_the_node_is_answering_ends_the_app_cleanly(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            asked, answer = threading.Event(), threading.Event()
            read_home = client.home

            def home(limit: int = 50, before: tuple[int, int] | None = None) -> list[PostView]:
                asked.set()
                answer.wait(15)
                return read_home(limit, before)

            client.home = home  # type: ignore[method-assign]
            app = make_app(client, clock=fixed_clock)
            try:
                async with app.run_test(size=SIZE) as pilot:
                    await wait_until(pilot, asked.is_set)
                # The app is gone, and its load was cancelled without an error.
                assert app.return_code in (None, 0)
            finally:
                answer.set()
                # The store closes next: the client's calls must be over.
                await asyncio.get_running_loop().shutdown_default_executor()

    run(scenario)


def test_a_click_highlights_a_post_and_a_second_click_opens_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                first = posts_of(app).current
                await pilot.click(PostList, offset=(10, 4))
                second = posts_of(app).current
                assert second is not None
                assert second != first
                await pilot.pause(0.6)  # not a double click
                await pilot.click(PostList, offset=(10, 4))
                await wait_until(pilot, lambda: isinstance(app.screen, ThreadScreen))
                await settle(pilot)
                assert posts_of(app).current is not None
                assert posts_of(app).current.id == second.id  # type: ignore[union-attr]

    run(scenario)


def test_the_tabs_are_clickable_and_the_owner_can_edit_their_profile(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                # " torv " then " 1 Home " ... " 5 Profile ": column 55 is in the fifth tab.
                await pilot.click(NavBar, offset=(55, 0))
                await wait_until(pilot, lambda: isinstance(app.screen, ProfileScreen))
                await settle(pilot)
                await pilot.press("e")
                name = app.screen.query_one("#name", Input)
                name.value = "Samantha"
                await pilot.press("ctrl+s")

                def renamed() -> bool:
                    screen = app.screen
                    return (
                        isinstance(screen, ProfileScreen)
                        and screen.profile is not None
                        and screen.profile.name == "Samantha"
                    )

                await wait_until(pilot, renamed)

    run(scenario)
