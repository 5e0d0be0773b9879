"""The compose dialog (n, r): a post or a reply, with an optional content warning."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from node import MAX_CW_CHARS, MAX_TEXT_CHARS, TorvError
from node.views import PostView
from ui.format import ms_now
from ui.widgets.post import PostCard

if TYPE_CHECKING:
    from ui.app import TorvApp

__all__ = ["ComposeScreen", "problem_with"]


def problem_with(text: str) -> str | None:
    """Why ``text`` cannot be posted as it is, or ``None``."""
    if not text.strip():
        return "Write something first."
    if len(text) > MAX_TEXT_CHARS:
        return f"{len(text) - MAX_TEXT_CHARS} characters too long (at most {MAX_TEXT_CHARS})."
    return None


class ComposeScreen(ModalScreen[bytes | None]):
    """Write and publish a post; dismissed with the new entry's id, or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "send", "Post"),
    ]

    def __init__(self, reply_to: PostView | None = None) -> None:
        super().__init__()
        self.reply_to = reply_to
        self.sending = False

    @property
    def torv(self) -> TorvApp:
        return cast("TorvApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="compose"):
            if self.reply_to is None:
                yield Label("New post", classes="dialog-title")
            else:
                yield Label(f"Reply to {self.reply_to.author_name}", classes="dialog-title")
                yield PostCard(
                    self.reply_to,
                    ms_now(self.torv.clock),
                    unfolded=not self.torv.fold_cw,
                    id="replying-to",
                )
            yield TextArea(id="text", placeholder="What is happening? #tags and @mentions work")
            yield Input(
                placeholder="Content warning (optional): readers see this first",
                max_length=MAX_CW_CHARS,
                id="cw",
            )
            with Horizontal(id="compose-status"):
                yield Static(f"0/{MAX_TEXT_CHARS}", id="count")
                yield Static("", id="problem", classes="problem")
            with Horizontal(classes="buttons"):
                yield Button("Post (ctrl+s)", variant="primary", id="send")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#text", TextArea).focus()

    @on(TextArea.Changed, "#text")
    def _changed(self) -> None:
        text = self.query_one("#text", TextArea).text
        count = self.query_one("#count", Static)
        count.update(f"{len(text)}/{MAX_TEXT_CHARS}")
        count.set_class(len(text) > MAX_TEXT_CHARS, "over")
        # Only the length is worth saying while typing; "empty" waits for ctrl+s.
        problem = problem_with(text) if len(text) > MAX_TEXT_CHARS else None
        self.query_one("#problem", Static).update(problem or "")

    @on(Button.Pressed, "#send")
    def action_send(self) -> None:
        if self.sending:
            return
        text = self.query_one("#text", TextArea).text
        problem = problem_with(text)
        if problem is not None:
            self.query_one("#problem", Static).update(problem)
            return
        cw = self.query_one("#cw", Input).value.strip() or None
        self._send(text.strip(), cw)

    @work(exclusive=True, group="send")
    async def _send(self, text: str, cw: str | None) -> None:
        self.sending = True
        button = self.query_one("#send", Button)
        button.disabled = True
        button.label = "Posting…"
        reply_to = self.reply_to.id if self.reply_to is not None else None
        try:
            entry_id = await self.torv.ask(self.torv.client.post, text, reply_to=reply_to, cw=cw)
        except TorvError as exc:
            self.query_one("#problem", Static).update(str(exc))
            self.torv.report(exc)
            return
        finally:
            self.sending = False
            button.disabled = False
            button.label = "Post (ctrl+s)"
        self.dismiss(entry_id)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self.sending:
            self.dismiss(None)
