"""How one post reads: the text block shared by every list of posts, and
:class:`PostCard`, a single post shown on its own (what a reply answers)."""

from __future__ import annotations

import re
from typing import Final

from rich.console import RenderableType
from rich.padding import Padding
from rich.text import Text
from textual.widgets import Static

from node.views import PostView
from ui.format import relative_time

__all__ = ["MAX_INDENT", "NO_REASON", "PostCard", "post_renderable", "post_text", "stats_line"]

#: Deeper replies in a thread are drawn at this depth (the text stays readable).
MAX_INDENT: Final = 6

#: What "why am I seeing this" says when the list recorded no reason.
NO_REASON: Final = "no reason recorded"

_TAG: Final = re.compile(r"(?<![\w#])#[^\s#]+")
_MENTION: Final = re.compile(r"(?<![\w@])@[^\s@]+")


def stats_line(post: PostView) -> Text:
    """Reaction counts, reposts and whether the owner reacted: ``♥ 2  ↻ 1 · liked``."""
    line = Text()
    for emoji, count in sorted(post.reactions.items(), key=lambda kv: (-kv[1], kv[0])):
        if line:
            line.append("  ")
        line.append(f"{emoji} {count}", style="bold red" if emoji == "♥" and post.liked else "")
    if post.reposts:
        if line:
            line.append("  ")
        line.append(f"↻ {post.reposts}", style="green")
    if post.liked:
        line.append(" · " if line else "")
        line.append("liked", style="bold red")
    return line


def post_text(post: PostView, now_ms: int, *, unfolded: bool = False, why: bool = False) -> Text:
    """The post as lines of text; a content warning hides the text unless
    ``unfolded``; ``why`` adds a line with the reason the post is in the list.

    A post hidden by the reader's moderation (kept in a thread as the context
    of replies) and a deleted one are one line that says so.
    """
    if post.hidden:
        out = Text(f"hidden: {post.reason or 'by your settings'}", style="dim italic")
    elif post.deleted:
        out = Text("(deleted by its author)", style="dim italic")
    else:
        out = _full_text(post, now_ms, unfolded=unfolded)
    if why and not post.hidden:
        out.append("\n")
        out.append(f"why: {post.reason or NO_REASON}", style="italic cyan")
    return out


def _full_text(post: PostView, now_ms: int, *, unfolded: bool) -> Text:
    out = Text(no_wrap=False, overflow="fold")
    if post.reposted_by:
        out.append(f"↻ reposted by {post.reposted_by}\n", style="green")
    out.append(post.author_name, style="bold")
    out.append(f" {post.author_short}", style="dim")
    out.append(f" · {relative_time(post.timestamp, now_ms)}", style="dim")
    if post.forked:
        out.append("  ⚠ forked feed", style="bold red")
    if post.reply_to is not None:
        out.append(f"\n↳ reply to {post.reply_to_name or 'a post not held here'}", style="italic")
    out.append("\n")
    if not post.held:
        out.append("(the reposted post has not reached this node yet)", style="dim italic")
    elif post.cw:
        out.append(f"⚠ CW: {post.cw}", style="bold yellow")
        if unfolded:
            out.append("\n")
            out.append_text(_body(post.text))
        else:
            out.append("  (space: show)", style="dim")
    else:
        out.append_text(_body(post.text))
    stats = stats_line(post)
    if stats:
        out.append("\n")
        out.append_text(stats)
    return out


def post_renderable(
    post: PostView, now_ms: int, *, unfolded: bool = False, why: bool = False
) -> RenderableType:
    """:func:`post_text`, indented by the post's depth in a thread."""
    text = post_text(post, now_ms, unfolded=unfolded, why=why)
    if post.depth <= 0:
        return text
    return Padding(text, (0, 0, 0, 2 * min(post.depth, MAX_INDENT)))


def _body(text: str) -> Text:
    body = Text(text)
    body.highlight_regex(_TAG, "cyan")
    body.highlight_regex(_MENTION, "bold magenta")
    return body


class PostCard(Static):
    """One post, read-only (the compose dialog shows what a reply answers)."""

    DEFAULT_CSS = """
    PostCard {
        height: auto;
        padding: 0 1;
        border-left: thick $accent;
    }
    """

    def __init__(
        self, post: PostView, now_ms: int, *, unfolded: bool = False, id: str | None = None
    ) -> None:
        super().__init__(post_text(post, now_ms, unfolded=unfolded), id=id)
        self.post = post
