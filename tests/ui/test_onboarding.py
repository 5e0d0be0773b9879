"""The first-start form: what it accepts, what it says is wrong, what it returns."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from node.records import parse_address
from storage.errors import InvalidArgument
from ui.onboarding import (
    Onboarding,
    OnboardingScreen,
    make_onboarding_app,
    name_problem,
    passphrase_problem,
    seed_problem,
)

from .fixtures import run

SIZE = (90, 34)


@pytest.mark.parametrize(
    "seed",
    ["", "192.0.2.10:4710", "127.0.0.1:1", "[2001:db8::1]:65535", "[::1]:4710", " 10.0.0.2:80 "],
)
def test_good_seeds(seed: str) -> None:
    assert seed_problem(seed) is None


@pytest.mark.parametrize(
    "seed",
    [
        "192.0.2.10",
        ":4710",
        "192.0.2.10:",
        "192.0.2.10:0",
        "192.0.2.10:65536",
        "192.0.2.10:port",
        "example.org:4710",
        "2001:db8::1:4710",
        "[192.0.2.10:4710",
    ],
)
def test_bad_seeds(seed: str) -> None:
    assert seed_problem(seed) is not None


@pytest.mark.parametrize(
    "seed",
    ["192.0.2.10:4710", "[2001:db8::1]:1", "example.org:4710", "1.2.3.4:0", "1.2.3.4:x", ":80"],
)
def test_the_form_accepts_exactly_the_seeds_the_node_accepts(seed: str) -> None:
    try:
        parse_address(seed)
    except InvalidArgument:
        node_accepts = False
    else:
        node_accepts = True
    assert (seed_problem(seed) is None) == node_accepts


def test_names_and_passphrases() -> None:
    assert name_problem("Ada") is None
    assert name_problem("   ") is not None
    assert name_problem("x" * 65) is not None
    assert name_problem("a\x07b") is not None
    assert passphrase_problem("", "") is None
    assert passphrase_problem("secret words", "secret words") is None
    assert passphrase_problem("secret words", "secret wordz") is not None


def _problem(screen: OnboardingScreen, field: str) -> str:
    return str(screen.query_one(f"#{field}-problem", Static).render())


def test_the_form_shows_problems_inline_then_returns_the_answers() -> None:
    async def scenario() -> None:
        app = make_onboarding_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, OnboardingScreen)
            await pilot.click("#create")
            assert "Choose a name" in _problem(screen, "name")
            screen.query_one("#name", Input).value = "Ada"
            screen.query_one("#passphrase", Input).value = "open sesame"
            screen.query_one("#repeat", Input).value = "open sesam"
            screen.query_one("#seed", Input).value = "seed.example:4710"
            screen.query_one("#seed", Input).focus()
            await pilot.pause()
            await pilot.press("enter")
            assert _problem(screen, "name") == ""
            assert "differ" in _problem(screen, "passphrase")
            assert "IP address" in _problem(screen, "seed")
            assert app.is_running
            screen.query_one("#repeat", Input).value = "open sesame"
            screen.query_one("#seed", Input).focus()
            screen.query_one("#seed", Input).value = "192.0.2.10:4710"
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
        assert app.return_value == Onboarding("Ada", "open sesame", "192.0.2.10:4710")

    run(scenario)


def test_typing_through_the_form_with_no_passphrase_or_seed() -> None:
    async def scenario() -> None:
        app = make_onboarding_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press(*"Bruno", "enter", "enter", "enter", "enter")
            await pilot.pause()
        assert app.return_value == Onboarding("Bruno", None, None)

    run(scenario)


def test_escape_leaves_without_answers() -> None:
    async def scenario() -> None:
        app = make_onboarding_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
        assert app.return_value is None

    run(scenario)
