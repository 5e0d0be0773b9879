"""First start: a small app that asks a new user for a name, an optional
passphrase and an optional seed node, before any identity or node exists.

``make_onboarding_app().run()`` returns an :class:`Onboarding` (or ``None``
if the user left); the caller creates the identity from it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Input, Label, Static

from node import MAX_NAME_CHARS

__all__ = [
    "Onboarding",
    "OnboardingApp",
    "OnboardingScreen",
    "make_onboarding_app",
    "name_problem",
    "passphrase_problem",
    "seed_problem",
]


@dataclass(frozen=True, slots=True)
class Onboarding:
    """What a new user answered. ``passphrase`` and ``seed`` (``HOST:PORT``) may be ``None``."""

    name: str
    passphrase: str | None
    seed: str | None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a profile name, or ``None``."""
    name = name.strip()
    if not name:
        return "Choose a name: it is how others see you (you can change it later)."
    if len(name) > MAX_NAME_CHARS:
        return f"At most {MAX_NAME_CHARS} characters."
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in name):
        return "The name holds a control character."
    return None


def passphrase_problem(passphrase: str, repeated: str) -> str | None:
    """Why the two passphrases will not do, or ``None`` (no passphrase is fine)."""
    if passphrase != repeated:
        return "The two passphrases differ."
    return None


def seed_problem(seed: str) -> str | None:
    """Why ``seed`` is not ``HOST:PORT`` (an IP address, IPv6 in brackets), or ``None``."""
    seed = seed.strip()
    if not seed:
        return None
    host, sep, port = seed.rpartition(":")
    if not sep or not host:
        return "Write the seed as HOST:PORT, for example 192.0.2.10:4710."
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return "The port must be a number from 1 to 65535."
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return "The host must be an IP address (IPv6 in brackets: [2001:db8::1]:4710)."
    if address.version == 6 and not bracketed:
        return "Put an IPv6 address in brackets: [2001:db8::1]:4710."
    return None


class OnboardingScreen(Screen[Onboarding | None]):
    """The form; dismissed with the answers, or ``None`` (escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Leave")]
    AUTO_FOCUS = "#name"

    DEFAULT_CSS = """
    OnboardingScreen {
        align: center middle;
    }
    OnboardingScreen #form {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        padding: 1 2;
        border: thick $primary;
    }
    OnboardingScreen .title {
        text-style: bold;
    }
    OnboardingScreen .hint {
        color: $text-muted;
    }
    OnboardingScreen .field {
        margin-top: 1;
        text-style: bold;
    }
    OnboardingScreen Input {
        margin-top: 1;
        background: $boost;
    }
    OnboardingScreen Input:focus {
        background: $primary 30%;
    }
    OnboardingScreen .problem {
        color: $error;
        height: auto;
        display: none;
    }
    OnboardingScreen #buttons {
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }
    OnboardingScreen #buttons Button {
        margin-left: 2;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            yield Static("Welcome to torv", classes="title")
            yield Static(
                "This creates your identity: a key that signs everything you post. "
                "It stays on this machine.",
                classes="hint",
            )
            yield Label("Your name", classes="field")
            yield Input(
                placeholder="how others see you",
                max_length=MAX_NAME_CHARS,
                id="name",
                compact=True,
            )
            yield Static("", classes="problem", id="name-problem")
            yield Label("Passphrase (optional)", classes="field")
            yield Input(
                placeholder="protects your key file", password=True, id="passphrase", compact=True
            )
            yield Input(
                placeholder="the same passphrase again", password=True, id="repeat", compact=True
            )
            yield Static("", classes="problem", id="passphrase-problem")
            yield Label("Seed node (optional)", classes="field")
            yield Input(placeholder="HOST:PORT of a node to join through", id="seed", compact=True)
            yield Static("", classes="problem", id="seed-problem")
            with Horizontal(id="buttons"):
                yield Button("Create identity", variant="primary", id="create")
                yield Button("Leave (esc)", id="leave")

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def _show(self, field: str, problem: str | None) -> None:
        line = self.query_one(f"#{field}-problem", Static)
        line.update(problem or "")
        line.display = problem is not None

    def check(self) -> Onboarding | None:
        """Show what is wrong under each field; the answers if nothing is."""
        problems = {
            "name": name_problem(self._value("name")),
            "passphrase": passphrase_problem(self._value("passphrase"), self._value("repeat")),
            "seed": seed_problem(self._value("seed")),
        }
        for field, problem in problems.items():
            self._show(field, problem)
        for field, problem in problems.items():
            if problem is not None:
                target = "repeat" if field == "passphrase" else field
                self.query_one(f"#{target}", Input).focus()
                return None
        return Onboarding(
            name=self._value("name").strip(),
            passphrase=self._value("passphrase") or None,
            seed=self._value("seed").strip() or None,
        )

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        field = "passphrase" if event.input.id == "repeat" else event.input.id
        if field is not None:
            self._show(field, None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "seed":
            self.action_create()
        else:
            self.focus_next()

    @on(Button.Pressed, "#create")
    def action_create(self) -> None:
        answers = self.check()
        if answers is not None:
            self.dismiss(answers)

    @on(Button.Pressed, "#leave")
    def action_cancel(self) -> None:
        self.dismiss(None)


class OnboardingApp(App[Onboarding | None]):
    """The form as an app of its own: ``run()`` returns the answers or ``None``."""

    TITLE = "torv"

    def on_mount(self) -> None:
        self.push_screen(OnboardingScreen(), self.exit)


def make_onboarding_app() -> OnboardingApp:
    """The first-start app (what ``torv ui`` runs when there is no identity yet)."""
    return OnboardingApp()
