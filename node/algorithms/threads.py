"""New posts in the conversations you took part in, newest first."""

from __future__ import annotations

from node.algorithms import Item, Timeline

NAME = "threads"
DESCRIPTION = "New posts in the conversations you started or replied in, newest first."


def rank(timeline: Timeline, limit: int) -> list[Item]:
    joined = timeline.threads_joined()
    items = []
    for stored in timeline.in_threads(joined, limit * 2):
        if stored.entry.author == timeline.me:
            continue
        root = getattr(stored.entry.content, "root", None)
        if root is None:
            reason = f"{timeline.name(stored.entry.author)} started a thread you joined"
        elif (first := timeline.find(root)) is not None and first.entry.author == timeline.me:
            reason = "in a thread you started"
        else:
            reason = "in a thread you joined"
        items.append(Item(stored, reason))
    return items[:limit]
