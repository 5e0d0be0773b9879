"""What an algorithm may look at: :class:`Timeline`, and what it returns: :class:`Item`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from storage import Store, StoredEntry

__all__ = ["Item", "Timeline"]

Cursor = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a timeline (a post, or a repost of one), why it is there,
    and the score it was ranked by (for algorithms that score)."""

    entry: StoredEntry
    reason: str
    score: float = 0.0


class Timeline:
    """A read-only view of the local store for algorithms.

    Every method reads; none writes. Lists of entries hold posts and reposts
    whose payload is held (deleted posts never appear), newest first.
    ``now`` is the time the timeline is built, in ms since the epoch.
    """

    def __init__(self, store: Store, me: bytes, now: int, name: Callable[[bytes], str]) -> None:
        self._store = store
        self.me = me
        self.now = now
        self._name = name
        self._following: dict[bytes, frozenset[bytes]] = {}

    # --- people -------------------------------------------------------------------

    def name(self, feed: bytes) -> str:
        """How the owner sees ``feed``: a petname, ``~`` and a chosen name, or a short id."""
        return self._name(feed)

    def following(self, feed: bytes | None = None) -> frozenset[bytes]:
        """The feeds ``feed`` follows (the owner when ``None``), as far as the store knows."""
        feed = self.me if feed is None else feed
        if feed not in self._following:
            self._following[feed] = frozenset(self._store.following(feed))
        return self._following[feed]

    def within(self, hops: int) -> frozenset[bytes]:
        """The owner and everyone within ``hops`` follow steps of the owner."""
        reached = {self.me}
        frontier = {self.me}
        for _ in range(hops):
            frontier = {f for feed in frontier for f in self.following(feed)} - reached
            reached |= frontier
        return frozenset(reached)

    def blocked(self) -> frozenset[bytes]:
        return frozenset(self._store.blocking(self.me))

    # --- entries ------------------------------------------------------------------

    def posts_by(
        self, authors: Iterable[bytes], limit: int, before: Cursor | None = None
    ) -> list[StoredEntry]:
        """Posts and reposts of ``authors``."""
        return self._store.timeline(authors, limit=limit, before=before)

    def everything(self, limit: int, before: Cursor | None = None) -> list[StoredEntry]:
        """Posts and reposts of every feed held here, and posts kept for the
        square from feeds not replicated here (``StoredEntry.loose``)."""
        return self._store.recent(limit=limit, before=before)

    def mentions(self, limit: int, before: Cursor | None = None) -> list[StoredEntry]:
        """Posts that mention the owner."""
        return self._store.mentions(self.me, limit=limit, before=before)

    def replies_to_me(self, limit: int, before: Cursor | None = None) -> list[StoredEntry]:
        """Other people's replies to the owner's posts."""
        return self._store.replies_to(self.me, limit=limit, before=before)

    def threads_joined(self, limit: int = 200) -> list[bytes]:
        """Roots of the threads the owner started or replied in, most recent first."""
        return self._store.threads_of(self.me, limit=limit)

    def in_threads(
        self, roots: Iterable[bytes], limit: int, before: Cursor | None = None
    ) -> list[StoredEntry]:
        """Posts in the threads that start at ``roots`` (the roots too)."""
        return self._store.in_threads(roots, limit=limit, before=before)

    def engagement(
        self, authors: Iterable[bytes], since: int
    ) -> list[tuple[bytes, bytes, str, int]]:
        """``(entry id, who, "react" or "repost", when)`` for each reaction and
        repost ``authors`` made at ``since`` (ms) or later, newest first."""
        return self._store.engagement(authors, since=since)

    def summaries(self, entry_ids: Iterable[bytes]) -> dict[bytes, tuple[bytes, str, int]]:
        """``id -> (author, kind, timestamp)`` of entries held here and not
        deleted; much cheaper than :meth:`find` for many ids."""
        return {
            entry_id: (author, kind, timestamp)
            for entry_id, (author, kind, timestamp, deleted) in self._store.summaries(
                entry_ids
            ).items()
            if not deleted
        }

    def find(self, entry_id: bytes) -> StoredEntry | None:
        """The entry ``entry_id`` if it is held here and not deleted."""
        stored = self._store.find(entry_id)
        return None if stored is None or stored.deleted else stored

    def reactions(self, entry_id: bytes) -> dict[str, int]:
        """How many people reacted to ``entry_id``, per emoji."""
        return self._store.reactions(entry_id)

    def reposts(self, entry_id: bytes) -> int:
        return self._store.reposts(entry_id)
