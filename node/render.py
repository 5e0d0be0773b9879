"""How entries look in the terminal and as JSON.

JSON output is one object per entry with stable field names (see README,
"Scripting with --json"); the text form is for people.
"""

from __future__ import annotations

import datetime
import textwrap
from typing import Any

from storage import (
    Block,
    Delete,
    Follow,
    Post,
    Profile,
    React,
    Repost,
    StoredEntry,
    Unblock,
    Unfollow,
    UnknownPayload,
)

from .identity import feed_id_to_text
from .local import LocalNode

__all__ = ["entry_json", "entry_text", "short_entry_id"]


def short_entry_id(entry_id: bytes) -> str:
    """The first 10 hex digits of an entry id (accepted back as a prefix)."""
    return entry_id.hex()[:10]


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M")


def entry_json(node: LocalNode, stored: StoredEntry) -> dict[str, Any]:
    """A JSON-ready description of a stored entry."""
    entry = stored.entry
    out: dict[str, Any] = {
        "id": entry.id.hex(),
        "author": feed_id_to_text(entry.author),
        "author_name": node.display_name(entry.author),
        "seq": entry.seq,
        "kind": entry.kind,
        "timestamp": entry.header.timestamp,
        "deleted": stored.deleted,
    }
    content = entry.content
    if isinstance(content, Post):
        out["text"] = content.text
        out["cw"] = content.cw
        out["reply_to"] = content.parent.hex() if content.parent else None
        out["root"] = content.root.hex() if content.root else None
        out["tags"] = list(content.tags)
        out["mentions"] = [feed_id_to_text(feed) for feed in content.mentions]
        out["reactions"] = node.store.reactions(entry.id)
    elif isinstance(content, Repost | React | Delete):
        out["target"] = content.entry.hex()
        if isinstance(content, React):
            out["emoji"] = content.emoji
    elif isinstance(content, Follow | Unfollow | Block | Unblock):
        out["feed"] = feed_id_to_text(content.feed)
    elif isinstance(content, Profile):
        out["name"] = content.name
        out["bio"] = content.bio
    return out


def entry_text(
    node: LocalNode, stored: StoredEntry, *, indent: int = 0, show_cw: bool = False
) -> str:
    """A few lines describing a stored entry for a person."""
    entry = stored.entry
    content = entry.content
    pad = "  " * indent
    head = (
        f"{pad}{node.display_name(entry.author)}  ·  {_time(entry.header.timestamp)}"
        f"  ·  {short_entry_id(entry.id)}"
    )
    body: list[str] = []
    if stored.deleted:
        body.append("(deleted by its author)")
    elif content is None:
        body.append("(payload not held here)")
    elif isinstance(content, Post):
        if content.parent:
            parent = node.store.find(content.parent)
            to = node.display_name(parent.entry.author) if parent else "a post not held here"
            body.append(f"↳ reply to {to}")
        if content.cw and not show_cw:
            body.append(f"⚠ {content.cw}  (hidden: --show-cw to read)")
        else:
            if content.cw:
                body.append(f"⚠ {content.cw}")
            for line in content.text.splitlines() or [""]:
                body.extend(textwrap.wrap(line, 76) or [""])
        reactions = node.store.reactions(entry.id)
        if reactions:
            body.append("  ".join(f"{emoji} {n}" for emoji, n in sorted(reactions.items())))
    elif isinstance(content, Repost):
        original = node.store.find(content.entry)
        who = node.display_name(content.author)
        if original is not None and isinstance(original.entry.content, Post):
            body.append(f"↻ reposted {who}:")
            body.extend("  " + line for line in original.entry.content.text.splitlines())
        else:
            body.append(f"↻ reposted a post by {who} ({short_entry_id(content.entry)})")
    elif isinstance(content, React):
        body.append(f"{content.emoji} reacted to {short_entry_id(content.entry)}")
    elif isinstance(content, Follow | Unfollow | Block | Unblock):
        body.append(f"{content.kind}s {node.display_name(content.feed)}")
    elif isinstance(content, Profile):
        if content.name:
            body.append(f"name: {content.name}")
        if content.bio:
            body.append(f"bio: {content.bio}")
    elif isinstance(content, Delete):
        body.append(f"deleted {short_entry_id(content.entry)}")
    elif isinstance(content, UnknownPayload):
        body.append(f"(an entry of kind {content.kind!r}, which this torv does not show)")
    return "\n".join([head, *(f"{pad}  {line}" for line in body)])
