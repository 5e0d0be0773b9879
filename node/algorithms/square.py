"""Every public post your node has seen, newest first."""

from __future__ import annotations

from node.algorithms import Item, Timeline

NAME = "square"
DESCRIPTION = "Every public post your node has seen, newest first."


def rank(timeline: Timeline, limit: int) -> list[Item]:
    follows = timeline.following()
    items = []
    for stored in timeline.everything(limit):
        author = stored.entry.author
        if author == timeline.me:
            reason = "your post"
        elif author in follows:
            reason = f"you follow {timeline.name(author)}"
        else:
            reason = "seen on the square"
        items.append(Item(stored, reason))
    return items
