"""Posts the people you follow liked and reposted lately, hottest first.

Each post's score adds up what the people you follow did with it in the
last three days, and fades with the post's age::

    score = (likes + 2 * reposts) * 0.5 ** (age_hours / 12)

A like or any reaction counts 1 and a repost 2 (one of each per person);
``age_hours`` is the time since the post was written, so a post loses half
its score every 12 hours. Ties go to the newer post.
"""

from __future__ import annotations

from node.algorithms import Item, Timeline

NAME = "popular"
DESCRIPTION = "What the people you follow liked and reposted lately, with a 12-hour half-life."

WINDOW_MS = 3 * 24 * 3600 * 1000
HALF_LIFE_HOURS = 12.0
WEIGHT = {"react": 1.0, "repost": 2.0}


def rank(timeline: Timeline, limit: int) -> list[Item]:
    follows = timeline.following() - timeline.blocked()
    likers: dict[bytes, set[bytes]] = {}
    reposters: dict[bytes, set[bytes]] = {}
    for entry_id, who, kind, _ in timeline.engagement(follows, since=timeline.now - WINDOW_MS):
        (likers if kind == "react" else reposters).setdefault(entry_id, set()).add(who)
    # Score from the index columns first; decode only the posts that make the page.
    scored = []
    for entry_id, (_, kind, written) in timeline.summaries(
        likers.keys() | reposters.keys()
    ).items():
        if kind != "post":
            continue
        age_hours = max(0, timeline.now - written) / 3_600_000
        likes, reposts = likers.get(entry_id, set()), reposters.get(entry_id, set())
        weight = WEIGHT["react"] * len(likes) + WEIGHT["repost"] * len(reposts)
        scored.append((weight * 0.5 ** (age_hours / HALF_LIFE_HOURS), written, entry_id))
    scored.sort(reverse=True)
    items = []
    for score, _, entry_id in scored:
        stored = timeline.find(entry_id)
        if stored is not None:
            reason = _reason(timeline, likers.get(entry_id, set()), reposters.get(entry_id, set()))
            items.append(Item(stored, reason, score))
            if len(items) == limit:
                break
    return items


def _reason(timeline: Timeline, likes: set[bytes], reposts: set[bytes]) -> str:
    parts = []
    for verb, people in (("liked", likes), ("reposted", reposts)):
        if len(people) == 1:
            parts.append(f"{verb} by {timeline.name(next(iter(people)))}")
        elif people:
            parts.append(f"{verb} by {len(people)} people you follow")
    return ", ".join(parts)
