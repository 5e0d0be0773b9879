"""The reader's own choices in the app: why a post is shown, mutes, filters,
timeline algorithms, content warnings, and how a thread shows what is hidden."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, OptionList, RadioSet

from node.home import Home
from node.local import LocalNode
from storage import Follow, Post, Profile, React
from ui.app import TorvApp, make_app
from ui.screens.base import INPUT_GRACE
from ui.screens.profile import ProfileScreen
from ui.screens.settings import SettingsScreen
from ui.screens.thread import ThreadScreen
from ui.screens.timelines import HomeScreen

from .fixtures import (
    Person,
    StoreClient,
    fixed_client,
    fixed_clock,
    key_for,
    rendered,
    run,
    running_node,
    settle,
    wait_until,
)
from .test_app import Notes, loaded, posts_of, texts

SIZE = (100, 40)
ADA = Person("Ada", key_for("Ada"))


def _profile(app: TorvApp) -> ProfileScreen:
    screen = app.screen
    assert isinstance(screen, ProfileScreen), screen
    return screen


def _settings(app: TorvApp) -> SettingsScreen:
    screen = app.screen
    assert isinstance(screen, SettingsScreen), screen
    return screen


async def _open_settings(pilot: Pilot[Any]) -> SettingsScreen:
    app = pilot.app
    assert isinstance(app, TorvApp)
    await pilot.press("6")
    await wait_until(pilot, lambda: _settings(app).view is not None)
    return _settings(app)


async def _choose_algorithm(pilot: Pilot[Any], name: str) -> None:
    screen = _settings(pilot.app)  # type: ignore[arg-type]
    algorithms = screen.query_one("#algorithms", OptionList)
    algorithms.focus()
    algorithms.highlighted = algorithms.get_option_index(f"algorithm-{name}")
    await pilot.press("enter")


def _write_algorithm(home: Path, name: str, source: str) -> None:
    folder = home / "algorithms"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    os.chmod(path, 0o600)


MINE_ONLY = '''\
"""Only my own posts."""

from node.algorithms import Item

NAME = "mine"
DESCRIPTION = "Only my own posts."


def rank(timeline, limit):
    return [Item(s, "mine only") for s in timeline.posts_by({timeline.me}, limit)]
'''

MINE_BROKEN = '''\
"""Only my own posts, once; now it fails."""

NAME = "mine"
DESCRIPTION = "Only my own posts."


def rank(timeline, limit):
    raise RuntimeError("the ranking broke")
'''


# --- why am I seeing this -------------------------------------------------------------


def test_w_says_why_a_post_is_shown_and_again_hides_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a", name="Al") as client:
            client.post("Mine")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                assert "why:" not in rendered(posts_of(app), 0)
                await pilot.press("w")
                assert "why: your post" in rendered(posts_of(app), 0)
                await pilot.press("w")
                assert "why:" not in rendered(posts_of(app), 0)

    run(scenario)


def test_why_names_the_followed_author_and_says_when_no_reason_was_recorded(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                await pilot.press("w")
                assert "why: you follow ~Chiara" in rendered(posts_of(app), 0)
                # The command palette does the same for the highlighted post.
                await pilot.press("j", "ctrl+p")
                await pilot.press(*"Why am I")
                await pilot.pause(0.5)
                await pilot.press("enter")
                await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen))
                await wait_until(
                    pilot, lambda: "why: ~Bruno reposted" in rendered(posts_of(app), 1)
                )
                # A profile lists a person's posts: no algorithm chose them.
                await pilot.press("p")
                await wait_until(pilot, lambda: _profile(app).loaded)
                await pilot.press("w")
                assert "why: no reason recorded" in rendered(posts_of(app), 0)

    run(scenario)


# --- mutes ------------------------------------------------------------------------------


def test_mute_from_a_profile_hides_their_posts_on_home_and_unmute_brings_them_back(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            notes = Notes()
            async with app.run_test(size=SIZE, message_hook=notes) as pilot:
                await settle(pilot)
                ada_posts = {p.text for p in posts_of(app).posts if p.author == ADA.feed}
                assert len(ada_posts) == 2
                app.show_profile(ADA.feed)
                await wait_until(pilot, lambda: _profile(app).profile is not None)
                card = app.screen.query_one("#profile-card")
                assert "muted" not in str(card.render())
                await pilot.press("m")
                await wait_until(pilot, lambda: _profile(app).profile.muted)  # type: ignore[union-attr]
                await wait_until(pilot, lambda: "muted (only you know)" in str(card.render()))
                assert "Muted ~Ada" in notes.text()
                # Their posts still show on their own profile.
                assert ada_posts <= set(texts(app))
                await pilot.press("escape")
                await wait_until(pilot, lambda: not ada_posts & set(texts(app)))
                assert texts(app)  # the others still show

                app.show_profile(ADA.feed)
                await wait_until(pilot, lambda: _profile(app).profile is not None)
                await pilot.press("m")
                await wait_until(pilot, lambda: not _profile(app).profile.muted)  # type: ignore[union-attr]
                await pilot.press("escape")
                await wait_until(pilot, lambda: ada_posts <= set(texts(app)))

    run(scenario)


def test_hide_reposts_from_a_profile_keeps_their_own_posts(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                await pilot.press("j")  # Bruno's repost of Chiara's post
                post = posts_of(app).current
                assert post is not None
                assert post.reposted_by == "~Bruno"
                app.show_profile(Person("Bruno", key_for("Bruno")).feed)
                await wait_until(pilot, lambda: _profile(app).profile is not None)
                await pilot.press("h")
                await wait_until(
                    pilot,
                    lambda: _profile(app).profile.reposts_hidden,  # type: ignore[union-attr]
                )
                assert "reposts hidden (only you know)" in str(
                    app.screen.query_one("#profile-card").render()
                )
                await pilot.press("escape")
                await wait_until(
                    pilot, lambda: all(p.reposted_by is None for p in posts_of(app).posts)
                )
                assert any(p.author_name == "~Bruno" for p in posts_of(app).posts)

    run(scenario)


def test_mute_and_hide_reposts_are_not_offered_on_your_own_profile(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                await pilot.press("5")
                await wait_until(pilot, lambda: _profile(app).profile is not None)
                await pilot.press("m", "h")
                await settle(pilot)
                assert client.settings().muted == ()
                assert client.settings().reposts_hidden == ()

    run(scenario)


# --- filters ----------------------------------------------------------------------------


def test_a_word_filter_set_in_settings_hides_a_post(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            notes = Notes()
            async with app.run_test(size=SIZE, message_hook=notes) as pilot:
                await settle(pilot)
                assert any("jellies" in text for text in texts(app))
                screen = await _open_settings(pilot)
                words = screen.query_one("#filter-words", Input)
                words.focus()
                await pilot.press(*"Jellies, spoiler", "enter")
                await wait_until(pilot, lambda: "Filters saved" in notes.text())
                assert client.settings().filter_words == ("jellies", "spoiler")
                tags = screen.query_one("#filter-tags", Input)
                tags.focus()
                await pilot.press(*"#engines", "enter")
                await wait_until(pilot, lambda: client.settings().filter_tags == ("engines",))
                await pilot.press("escape", "1")
                await wait_until(pilot, lambda: not any("jellies" in text for text in texts(app)))
                assert not any("#engines" in text for text in texts(app))
                assert "Tide is out, the pools are full of life." in texts(app)

    run(scenario)


def test_a_filtered_post_stays_in_its_thread_as_a_placeholder(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            client.set_filters(["hello"], [])
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                assert not any("Hello" in text for text in texts(app))
                await pilot.press("j", "j", "j")
                reply = posts_of(app).current
                assert reply is not None
                assert reply.text == "Welcome, Sam! Press ? for the keys."
                await pilot.press("enter")
                await wait_until(
                    pilot, lambda: isinstance(app.screen, ThreadScreen) and app.screen.loaded
                )
                root = posts_of(app).posts[0]
                assert root.hidden
                assert rendered(posts_of(app), 0) == "hidden: filtered word 'hello'"
                # Nothing to reply to: the text is not shown.
                posts_of(app).highlighted = 0
                await pilot.press("r")
                await pilot.pause()
                assert isinstance(app.screen, ThreadScreen)

    run(scenario)


def test_a_deleted_post_with_replies_stays_in_its_thread_as_a_placeholder(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            mine = next(p for p in client.home() if p.text.startswith("Hello, square!"))
            client.local.delete(mine.id)
            reply = next(p for p in client.home() if p.reply_to == mine.id)
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                app.show_thread(reply.id)
                await wait_until(
                    pilot, lambda: isinstance(app.screen, ThreadScreen) and app.screen.loaded
                )
                assert [post.depth for post in posts_of(app).posts] == [0, 1]
                assert rendered(posts_of(app), 0) == "(deleted by its author)"

    run(scenario)


# --- timeline algorithms ----------------------------------------------------------------


@contextmanager
def _recent_client(path: Path) -> Iterator[StoreClient]:
    """The owner, who follows Ada; both post now, and Ada likes the owner's first post."""
    home = Home(path)
    me = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    LocalNode.init(home, key=me)
    with LocalNode.open(home) as local:
        store = local.store
        store.append(ADA.key, Profile(name="Ada"))
        store.append(me, Follow(feed=ADA.feed))
        first = local.post("first of mine")
        local.post("second of mine")
        store.append(ADA.key, React(entry=first.id, author=local.me, emoji="♥"))
        store.append(ADA.key, Post(text="Ada was here"))
        yield StoreClient(local)


def test_choosing_popular_in_settings_changes_home(tmp_path: Path) -> None:
    async def scenario() -> None:
        with _recent_client(tmp_path / "home") as client:
            app = make_app(client)
            notes = Notes()
            async with app.run_test(size=SIZE, message_hook=notes) as pilot:
                await loaded(pilot)
                assert texts(app) == ["Ada was here", "second of mine", "first of mine"]
                await _open_settings(pilot)
                await _choose_algorithm(pilot, "popular")
                await wait_until(pilot, lambda: "ranked by popular" in notes.text())
                assert client.settings().algorithm == "popular"
                chosen = _settings(app).query_one("#algorithms", OptionList)
                marked = chosen.get_option("algorithm-popular").prompt
                assert str(marked).startswith("● popular")
                await pilot.press("1")
                await wait_until(pilot, lambda: texts(app) == ["first of mine"])
                heading = app.screen.query_one("#heading")
                await wait_until(pilot, lambda: "popular" in str(heading.render()))
                await pilot.press("w")
                assert "why: liked by ~Ada" in rendered(posts_of(app), 0)

    run(scenario)


def test_a_broken_own_algorithm_is_listed_with_its_error_and_cannot_be_chosen(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            _write_algorithm(client.local.home.path, "broken", "def rank(:\n")
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                screen = await _open_settings(pilot)
                algorithms = screen.query_one("#algorithms", OptionList)
                broken = algorithms.get_option("broken-broken")
                assert broken.disabled
                assert "does not load" in str(broken.prompt)
                assert "SyntaxError" in str(broken.prompt)
                algorithms.focus()
                algorithms.highlighted = algorithms.get_option_index("broken-broken")
                await pilot.press("enter")
                await settle(pilot)
                assert client.settings().algorithm == "latest"

    run(scenario)


def test_a_chosen_algorithm_that_breaks_is_reported_once_and_latest_is_shown(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with _recent_client(tmp_path / "home") as client:
            _write_algorithm(client.local.home.path, "mine", MINE_ONLY)
            app = make_app(client)
            notes = Notes()
            async with app.run_test(size=SIZE, message_hook=notes) as pilot:
                await loaded(pilot)
                await _open_settings(pilot)
                await _choose_algorithm(pilot, "mine")
                await wait_until(pilot, lambda: client.settings().algorithm == "mine")
                await pilot.press("1")
                await wait_until(pilot, lambda: texts(app) == ["second of mine", "first of mine"])
                _write_algorithm(client.local.home.path, "mine", MINE_BROKEN)
                await pilot.press("2", "1")
                await wait_until(pilot, lambda: "Your algorithm mine failed" in notes.text())
                assert "the ranking broke" in notes.text()
                await wait_until(pilot, lambda: "Ada was here" in texts(app))
                heading = app.screen.query_one("#heading")
                await wait_until(pilot, lambda: "showing latest" in str(heading.render()))
                # Said once: coming back to home does not say it again.
                await pilot.press("2", "1")
                await settle(pilot)
                assert notes.text().count("Your algorithm mine failed") == 1
                # Settings show the error too.
                screen = await _open_settings(pilot)
                error = screen.query_one("#algorithm-error")
                assert error.display
                assert "the ranking broke" in str(error.render())

    run(scenario)


# --- content warnings ---------------------------------------------------------------------


def test_with_folding_off_a_content_warning_shows_its_text(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            client.post("The butler did it.", cw="film ending")
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                assert "butler" not in rendered(posts_of(app), 0)
                screen = await _open_settings(pilot)
                fold = screen.query_one("#fold-cw", Checkbox)
                assert fold.value
                fold.focus()
                await pilot.press("space")
                await wait_until(pilot, lambda: not client.settings().fold_cw)
                await wait_until(pilot, lambda: not app.fold_cw)
                await pilot.press("1")
                await wait_until(pilot, lambda: "butler" in rendered(posts_of(app), 0))
                assert "CW: film ending" in rendered(posts_of(app), 0)
                # space still folds it for the reader who wants to.
                await pilot.press("space")
                assert "butler" not in rendered(posts_of(app), 0)

    run(scenario)


def test_folding_off_in_the_settings_applies_from_the_start(tmp_path: Path) -> None:
    async def scenario() -> None:
        with running_node(tmp_path / "a") as client:
            client.post("The butler did it.", cw="film ending")
            client.set_fold_cw(False)
            app = make_app(client)
            async with app.run_test(size=SIZE) as pilot:
                await loaded(pilot)
                await wait_until(pilot, lambda: "butler" in rendered(posts_of(app), 0))

    run(scenario)


# --- live reloads while keys are pressed --------------------------------------------------


def test_a_live_reload_waits_while_keys_are_pressed(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                posts = posts_of(app)
                await pilot.press("j")
                pressed = app.input_at  # when the app took the key in
                client.post("news from me")  # emits an entry event, as a node does
                await wait_until(pilot, lambda: "news from me" in texts(app))
                assert time.monotonic() - pressed >= INPUT_GRACE
                assert posts.current is not None
                assert posts.current.text.startswith("Counted 412")  # the reader stays

    run(scenario)


def test_a_reload_reuses_what_it_drew_for_unchanged_posts(tmp_path: Path) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                posts = posts_of(app)
                before = {p.item_id: posts.get_option(p.item_id.hex()) for p in posts.posts}
                client.post("news from me")
                await wait_until(pilot, lambda: "news from me" in texts(app))
                assert len(posts.posts) == len(before) + 1
                for item_id, option in before.items():
                    assert posts.get_option(item_id.hex()) is option

    run(scenario)


# --- the square -------------------------------------------------------------------------


def test_a_square_limit_chosen_in_settings_keeps_strangers_off_the_square(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with fixed_client(tmp_path / "home") as client:
            app = make_app(client, clock=fixed_clock)
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                await pilot.press("2")
                await wait_until(pilot, lambda: "Boron next." in texts(app))
                screen = await _open_settings(pilot)
                screen.query_one(RadioSet).focus()
                await pilot.press("down", "space")
                await wait_until(pilot, lambda: client.settings().square_hops == 1)
                await pilot.press("2")
                await wait_until(pilot, lambda: "Boron next." not in texts(app))
                assert "Tide is out, the pools are full of life." in texts(app)
                heading = app.screen.query_one("#heading")
                assert "within 1 follow step of you" in str(heading.render())

    run(scenario)
