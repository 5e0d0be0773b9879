"""You and the people you follow, newest first."""

from __future__ import annotations

from node.algorithms import Item, Timeline

NAME = "latest"
DESCRIPTION = "You and the people you follow, newest first."


def rank(timeline: Timeline, limit: int) -> list[Item]:
    follows = timeline.following()
    authors = ({timeline.me} | follows) - timeline.blocked()
    items = []
    for stored in timeline.posts_by(authors, limit):
        author = stored.entry.author
        reposted = stored.entry.kind == "repost"
        if author == timeline.me:
            reason = "you reposted this" if reposted else "your post"
        elif reposted:
            reason = f"{timeline.name(author)} reposted this (you follow them)"
        else:
            reason = f"you follow {timeline.name(author)}"
        items.append(Item(stored, reason))
    return items
