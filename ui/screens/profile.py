"""A profile: who someone is, their counts and posts; follow, block, mute and
hide reposts from here (muting and hiding reposts are private: never published)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from node import MAX_BIO_CHARS, MAX_NAME_CHARS, TorvError
from node.views import ClientEvent, PostView, ProfileView
from ui.screens.base import PostsScreen
from ui.widgets.post_list import PostList

__all__ = ["EditProfileScreen", "ProfileEdit", "ProfileScreen", "profile_text"]


def profile_text(profile: ProfileView) -> Text:
    """The card at the top of a profile."""
    card = Text()
    shown = profile.name if profile.is_me and profile.name else profile.display_name
    card.append(shown, style="bold")
    card.append(f"  {profile.short}", style="dim")
    marks: list[tuple[str, str]] = []
    if profile.is_me:
        marks.append(("this is you", "cyan"))
    if profile.i_follow:
        marks.append(("following", "green"))
    if profile.follows_me:
        marks.append(("follows you", "green"))
    if profile.i_block:
        marks.append(("blocked", "bold red"))
    if profile.muted:
        marks.append(("muted (only you know)", "yellow"))
    if profile.reposts_hidden:
        marks.append(("reposts hidden (only you know)", "yellow"))
    if profile.forked:
        marks.append(("⚠ forked feed: this key signed two different histories", "bold red"))
    for mark, style in marks:
        card.append("  ")
        card.append(f"[{mark}]", style=style)
    card.append(f"\n{profile.feed_text}", style="dim")
    if profile.name and not profile.is_me and profile.display_name != f"~{profile.name}":
        card.append(f"\ncalls themselves ~{profile.name}", style="italic")
    card.append("\n")
    card.append(profile.bio or "(no bio)", style="" if profile.bio else "dim italic")
    card.append("\n")
    card.append(
        f"{profile.entries} entries · following {profile.following} · "
        f"{profile.followers} follower{'' if profile.followers == 1 else 's'} known here",
        style="bold",
    )
    return card


class ProfileScreen(PostsScreen):
    """Someone's profile (the owner's when ``feed`` is ``None``: screen 5)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "follow", "Follow"),
        Binding("x", "block", "Block"),
        Binding("m", "mute", "Mute"),
        Binding("h", "hide_reposts", "Reposts"),
        Binding("e", "edit", "Edit"),
    ]
    HEADING = "Profile"
    EMPTY = "No posts held here yet."

    def __init__(self, feed: bytes | None = None) -> None:
        super().__init__()
        self._feed = feed
        self.profile: ProfileView | None = None

    @property
    def feed(self) -> bytes:
        return self._feed if self._feed is not None else self.client.me

    def compose_top(self) -> ComposeResult:
        yield Static("…", id="profile-card")

    def fetch(self, limit: int, before: tuple[int, int] | None) -> list[PostView]:
        return self.client.feed(self.feed, limit, before)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        profile = self.profile
        if action in ("follow", "block", "mute", "hide_reposts"):
            return profile is not None and not profile.is_me
        if action == "edit":
            return profile is not None and profile.is_me
        return super().check_action(action, parameters)

    def wants(self, event: ClientEvent) -> bool:
        return event.kind == "entry"

    def reload(self) -> None:
        super().reload()
        self._load_profile()

    @work(exclusive=True, group="profile")
    async def _load_profile(self) -> None:
        try:
            profile = await self.torv.ask(self.client.profile, self.feed)
        except TorvError as exc:
            self.torv.report(exc)
            return
        self.profile = profile
        self.query_one("#profile-card", Static).update(profile_text(profile))
        self.set_heading("Your profile" if profile.is_me else f"Profile of {profile.display_name}")
        self.refresh_bindings()

    @on(PostList.Asked)
    def _asked(self, event: PostList.Asked) -> None:
        # On a profile, f is about the person shown, not a reposted author.
        if event.action == "follow":
            event.stop()
            self.action_follow()

    @work(group="profile-action")
    async def action_follow(self) -> None:
        await self.torv.toggle_follow(self.feed)
        self._load_profile()

    @work(group="profile-action")
    async def action_block(self) -> None:
        await self.torv.toggle_block(self.feed)
        self._load_profile()

    @work(group="profile-action")
    async def action_mute(self) -> None:
        await self.torv.toggle_mute(self.feed)
        self.reload()

    @work(group="profile-action")
    async def action_hide_reposts(self) -> None:
        await self.torv.toggle_reposts_hidden(self.feed)
        self.reload()

    def action_edit(self) -> None:
        profile = self.profile
        if profile is None or not profile.is_me:
            return
        self.app.push_screen(
            EditProfileScreen(profile.name or "", profile.bio or ""), self._edited
        )

    def _edited(self, edit: ProfileEdit | None) -> None:
        if edit is not None:
            self._save_profile(edit)

    @work(group="profile-action")
    async def _save_profile(self, edit: ProfileEdit) -> None:
        try:
            await self.torv.ask(self.client.set_profile, name=edit.name, bio=edit.bio)
        except TorvError as exc:
            self.torv.report(exc)
            return
        self.notify("Profile updated.")
        self._load_profile()


@dataclass(frozen=True, slots=True)
class ProfileEdit:
    """A new name and bio (``None``: leave as it is)."""

    name: str | None
    bio: str | None


class EditProfileScreen(ModalScreen[ProfileEdit | None]):
    """Edit the owner's name and bio."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, name: str, bio: str) -> None:
        super().__init__()
        self._name = name
        self._bio = bio

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Edit your profile", classes="dialog-title")
            yield Label("Name")
            yield Input(self._name, max_length=MAX_NAME_CHARS, id="name")
            yield Label("Bio")
            yield TextArea(self._bio, id="bio")
            yield Static("", id="problem", classes="problem")
            with Horizontal(classes="buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        bio = self.query_one("#bio", TextArea).text.strip()
        if len(bio) > MAX_BIO_CHARS:
            self.query_one("#problem", Static).update(
                f"The bio has {len(bio)} characters; at most {MAX_BIO_CHARS}."
            )
            return
        if not name and not bio:
            self.query_one("#problem", Static).update("Give a name, a bio, or both.")
            return
        changed_name = name if name and name != self._name else None
        changed_bio = bio if bio and bio != self._bio else None
        if changed_name is None and changed_bio is None:
            self.dismiss(None)
            return
        self.dismiss(ProfileEdit(changed_name, changed_bio))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
