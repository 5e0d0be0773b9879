"""Posts that mention you and replies to your posts, newest first."""

from __future__ import annotations

from node.algorithms import Item, Timeline

NAME = "mentions"
DESCRIPTION = "Posts that mention you and replies to your posts, newest first."


def rank(timeline: Timeline, limit: int) -> list[Item]:
    found = {}
    for stored in timeline.replies_to_me(limit):
        found[stored.entry.id] = Item(
            stored, f"{timeline.name(stored.entry.author)} replied to you"
        )
    for stored in timeline.mentions(limit):
        if stored.entry.author != timeline.me and stored.entry.id not in found:
            found[stored.entry.id] = Item(
                stored, f"{timeline.name(stored.entry.author)} mentioned you"
            )
    newest = sorted(found.values(), key=lambda item: item.entry.cursor, reverse=True)
    return newest[:limit]
