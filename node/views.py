"""What the terminal app shows, read from the store: plain values, no store objects.

The app (``ui/``) never touches the store, trio or the control socket. It
asks a client (:mod:`node.client`) for views: frozen dataclasses of plain
values that cross threads and the control socket unchanged. :class:`Views`
builds them from a :class:`~node.local.LocalNode`; it runs wherever the store
may be used (in the node's store worker, or in a process of its own).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Final

from storage import Post, Repost, Store, StoredEntry
from storage.errors import InvalidArgument

from . import algorithms
from .algorithms import Item, Timeline
from .identity import feed_id_to_text, short_feed_id
from .local import LocalNode
from .moderation import Moderation

__all__ = [
    "MAX_PAGE",
    "ClientEvent",
    "NetworkView",
    "PeerView",
    "PostView",
    "ProfileView",
    "SettingsView",
    "SyncView",
    "Views",
]

#: The most items one page of any list may hold.
MAX_PAGE: Final = 200
#: How deep a ranked timeline is paged (ranking is redone for each page).
_MAX_DEPTH: Final = 3200

Cursor = tuple[int, int]


@dataclass(frozen=True, slots=True)
class PostView:
    """A post as the app shows it (a repost shows the post it carries).

    ``cursor`` is where the next (older) page starts. For a repost,
    ``reposted_by`` names who reposted and ``item_id`` is the repost entry's
    id, while ``id`` and the rest describe the original post.
    """

    id: bytes
    item_id: bytes
    author: bytes
    author_name: str
    author_short: str
    timestamp: int  # ms since the epoch, as the author wrote it
    text: str
    cw: str | None
    reply_to: bytes | None
    reply_to_name: str | None
    root: bytes | None
    tags: tuple[str, ...]
    reactions: dict[str, int]
    reposts: int
    liked: bool
    reposted_by: str | None
    deleted: bool
    forked: bool
    cursor: Cursor
    depth: int = 0
    held: bool = True  # False: a reposted post whose payload is not held here
    #: Why it is in this list ("you follow Ana"): what the app shows on request.
    #: For a hidden post, why it is hidden ("muted").
    reason: str = ""
    #: Hidden by the owner's moderation, kept only as the context of replies.
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class ProfileView:
    feed: bytes
    feed_text: str
    short: str
    display_name: str
    name: str | None
    bio: str | None
    entries: int
    following: int
    followers: int
    is_me: bool
    i_follow: bool
    i_block: bool
    follows_me: bool
    forked: bool
    #: Private to the owner (config.toml): hidden everywhere, still replicated.
    muted: bool = False
    reposts_hidden: bool = False


@dataclass(frozen=True, slots=True)
class PeerView:
    identity: bytes
    name: str
    address: str
    outbound: bool
    score: float
    uptime: float  # seconds


@dataclass(frozen=True, slots=True)
class SyncView:
    feed: bytes
    name: str
    have: int
    target: int


@dataclass(frozen=True, slots=True)
class NetworkView:
    identity: bytes
    listen: str
    dht: str
    peers: tuple[PeerView, ...]
    dht_contacts: tuple[str, ...]
    sync: tuple[SyncView, ...]
    topics: int
    mesh_links: int
    entries_in: int  # entries received from peers since the node started
    entries_out: int  # entries sent to peers since the node started


@dataclass(frozen=True, slots=True)
class SettingsView:
    data_dir: str
    identity_text: str
    algorithm: str
    #: Why the chosen algorithm cannot rank (``latest`` does instead), or ``None``.
    algorithm_error: str | None
    #: Every algorithm that can be chosen: ``(name, description)``.
    algorithms: tuple[tuple[str, str], ...]
    #: Own algorithm files that do not load: ``(file name, error)``.
    broken_algorithms: tuple[tuple[str, str], ...]
    hops: int
    seeds: tuple[str, ...]
    network_key: str
    square: bool
    fold_cw: bool
    square_hops: int | None
    muted: tuple[str, ...]
    reposts_hidden: tuple[str, ...]
    filter_words: tuple[str, ...]
    filter_tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Something happened in the node: ``kind`` is ``entry``, ``peer-up``,
    ``peer-down`` or ``sync``; the other fields are set as they apply."""

    kind: str
    entry_id: bytes | None = None
    author: bytes | None = None
    entry_kind: str | None = None
    peer: bytes | None = None
    feed: bytes | None = None
    have: int = 0
    target: int = 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _page(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


class Views:
    """Builds views from a local node's store (call from the store's thread)."""

    def __init__(self, local: LocalNode) -> None:
        self.local = local

    @property
    def store(self) -> Store:
        return self.local.store

    # --- lists of posts -----------------------------------------------------------

    def home(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        """The owner's timeline, ranked by the algorithm chosen in the settings
        (``latest`` if that one fails: :meth:`algorithm_error` says why)."""
        return self._ranked(self.local.config.algorithm, limit, before)

    def square(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        """Every public post seen, or, with ``square_hops`` set, those of people
        within that many follow hops."""
        hops = self.local.config.square_hops
        if hops is None:
            return self._ranked("square", limit, before)
        timeline = self._timeline()
        follows = timeline.following()
        items = []
        for stored in timeline.posts_by(
            timeline.within(hops) - timeline.blocked(), _page(limit), before
        ):
            author = stored.entry.author
            if author == timeline.me:
                reason = "your post"
            elif author in follows:
                reason = f"you follow {timeline.name(author)}"
            else:
                reason = f"{timeline.name(author)} is within {hops} follow hops of you"
            items.append(Item(stored, reason))
        return [
            view
            for item in self._moderated(items)
            if (view := self._post(item.entry, reason=item.reason)) is not None
        ]

    def mentions(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        """Posts that mention the owner and replies to the owner's posts, newest first."""
        return self._ranked("mentions", limit, before)

    def algorithm_error(self) -> str | None:
        """Why the chosen algorithm cannot rank (so ``latest`` does), or ``None``."""
        _, error = algorithms.run(
            self.local.config.algorithm, self._timeline(), 1, self.local.home.path
        )
        return None if error is None else str(error)

    def ranked(self, name: str, limit: int) -> tuple[list[Item], algorithms.AlgorithmError | None]:
        """The first ``limit`` items of algorithm ``name`` after moderation,
        and the error that made ``latest`` rank instead (or ``None``)."""
        items, error = algorithms.run(name, self._timeline(), 2 * limit, self.local.home.path)
        return self._moderated(items)[:limit], error

    def _timeline(self) -> Timeline:
        return Timeline(self.store, self.local.me, _now_ms(), self.local.display_name)

    def _ranked(self, name: str, limit: int, before: Cursor | None) -> list[PostView]:
        # Algorithms rank whole timelines; a later page is found by ranking
        # deeper and starting after the item the last page ended with.
        page = _page(limit)
        depth = 2 * page
        while True:
            timeline = self._timeline()
            items, _ = algorithms.run(name, timeline, depth, self.local.home.path)
            shown = self._moderated(items)
            if before is not None:
                after = next(
                    (i for i, item in enumerate(shown) if item.entry.cursor == before), None
                )
                shown = [] if after is None else shown[after + 1 :]
            if len(shown) >= page or len(items) < depth or depth >= _MAX_DEPTH:
                break
            depth *= 2
        return [
            view for item in shown[:page] if (view := self._post(item.entry, reason=item.reason))
        ]

    def _moderated(self, items: list[Item]) -> list[Item]:
        moderation = Moderation.from_config(self.local.config)
        kept = []
        for item in items:
            content = item.entry.entry.content
            shown = self.store.find(content.entry) if isinstance(content, Repost) else None
            if moderation.hidden(item.entry, shown) is None:
                kept.append(item)
        return kept

    def feed(self, feed: bytes, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._posts(self.store.timeline({feed}, limit=_page(limit), before=before))

    def search(self, query: str, limit: int = 50) -> list[PostView]:
        """``#tag`` finds tagged posts; anything else, posts containing the text."""
        query = query.strip()
        if query.startswith("#") and len(query) > 1:
            found = self.store.tagged(query[1:].casefold(), limit=_page(limit))
        else:
            found = self.store.search(query, limit=_page(limit))
        return self._posts(found)

    def thread(self, entry_id: bytes) -> list[PostView]:
        """The thread around ``entry_id`` in reading order, with depths."""
        thread = self.local.thread(entry_id)
        moderation = Moderation.from_config(self.local.config)
        items = thread.items
        views = []
        for index, item in enumerate(items):
            answered = index + 1 < len(items) and items[index + 1].depth > item.depth
            hidden = moderation.hidden(item.stored)
            if (item.stored.deleted or hidden) and not answered:
                continue  # gone from the thread, unless replies need it as context
            view = self._post(item.stored, depth=item.depth, reason=hidden or "")
            if view is not None:
                if hidden:
                    view = dataclasses.replace(view, text="", cw=None, hidden=True)
                views.append(view)
        return views

    def post(self, entry_id: bytes) -> PostView | None:
        stored = self.store.find(entry_id)
        return None if stored is None else self._post(stored)

    # --- people and the node ------------------------------------------------------------

    def profile(self, feed: bytes) -> ProfileView:
        me, store = self.local.me, self.store
        info = store.feed_info(feed)
        following = store.following(feed)
        return ProfileView(
            feed=feed,
            feed_text=feed_id_to_text(feed),
            short=short_feed_id(feed),
            display_name=self.local.display_name(feed),
            name=info.name if info else None,
            bio=info.bio if info else None,
            entries=info.latest_seq if info else 0,
            following=len(following),
            followers=len(store.followers(feed)),
            is_me=feed == me,
            i_follow=feed in store.following(me),
            i_block=feed in store.blocking(me),
            follows_me=me in following,
            forked=bool(info and info.forked),
            muted=feed in self.local.config.mute,
            reposts_hidden=feed in self.local.config.hide_reposts,
        )

    def name(self, feed: bytes) -> str:
        return self.local.display_name(feed)

    def settings(
        self, *, seeds: tuple[str, ...], network_key: bytes, hops: int, square: bool
    ) -> SettingsView:
        config, data_dir = self.local.config, self.local.home.path
        choices, broken = [], []
        for found in algorithms.available(data_dir):
            if isinstance(found, algorithms.AlgorithmError):
                broken.append((found.algorithm or "?", str(found)))
            else:
                choices.append((found.name, found.description))
        return SettingsView(
            data_dir=str(data_dir),
            identity_text=feed_id_to_text(self.local.me),
            algorithm=config.algorithm,
            algorithm_error=self.algorithm_error(),
            algorithms=tuple(choices),
            broken_algorithms=tuple(broken),
            hops=hops,
            seeds=seeds,
            network_key=network_key.hex(),
            square=square,
            fold_cw=config.fold_cw,
            square_hops=config.square_hops,
            muted=tuple(sorted(self.local.display_name(feed) for feed in config.mute)),
            reposts_hidden=tuple(
                sorted(self.local.display_name(feed) for feed in config.hide_reposts)
            ),
            filter_words=config.filter_words,
            filter_tags=config.filter_tags,
        )

    # --- private settings (config.toml; never published) --------------------------------

    def set_algorithm(self, name: str) -> None:
        """Rank the home timeline with ``name`` from now on; raises
        :class:`AlgorithmError` (and changes nothing) if it does not load."""
        algorithms.load(name, self.local.home.path)
        self.local.set_setting("timeline", "algorithm", name)

    def set_muted(self, feed: bytes, muted: bool) -> None:
        self._set_feeds("mute", self.local.config.mute, feed, muted)

    def set_reposts_hidden(self, feed: bytes, hidden: bool) -> None:
        self._set_feeds("hide_reposts", self.local.config.hide_reposts, feed, hidden)

    def _set_feeds(self, key: str, held: frozenset[bytes], feed: bytes, member: bool) -> None:
        if feed == self.local.me:
            raise InvalidArgument("that is you")
        feeds = (held | {feed}) if member else (held - {feed})
        self.local.set_setting(
            "moderation", key, sorted(feed_id_to_text(each) for each in feeds) or None
        )

    def set_filters(self, words: list[str], tags: list[str]) -> None:
        """Hide posts containing any of ``words`` or tagged with any of ``tags``."""
        self.local.set_setting("moderation", "words", words or None)
        self.local.set_setting("moderation", "tags", [tag.lstrip("#") for tag in tags] or None)

    def set_fold_cw(self, fold: bool) -> None:
        self.local.set_setting("timeline", "fold_cw", fold)

    def set_square_hops(self, hops: int | None) -> None:
        self.local.set_setting("timeline", "square_hops", hops)

    # --- building one post view ---------------------------------------------------------

    def _posts(self, items: list[StoredEntry]) -> list[PostView]:
        return [view for stored in items if (view := self._post(stored)) is not None]

    def _post(self, stored: StoredEntry, *, depth: int = 0, reason: str = "") -> PostView | None:
        entry = stored.entry
        content = entry.content
        reposted_by: str | None = None
        shown = stored
        if isinstance(content, Repost):
            reposted_by = self.local.display_name(entry.author)
            original = self.store.find(content.entry)
            if original is None or not isinstance(original.entry.content, Post):
                return self._missing(stored, content.entry, content.author, reposted_by, reason)
            shown = original
        elif not isinstance(content, Post) and not stored.deleted:
            return None
        return self._describe(shown, stored, reposted_by, depth, reason)

    def _describe(
        self,
        shown: StoredEntry,
        item: StoredEntry,
        reposted_by: str | None,
        depth: int,
        reason: str,
    ) -> PostView:
        entry, store, me = shown.entry, self.store, self.local.me
        content = entry.content
        post = content if isinstance(content, Post) else None
        parent_name: str | None = None
        if post is not None and post.parent is not None:
            parent = store.find(post.parent)
            if parent is not None:
                parent_name = self.local.display_name(parent.entry.author)
            elif post.mentions:
                # A reply mentions the author it answers (LocalNode.post does).
                parent_name = self.local.display_name(post.mentions[0])
            else:
                parent_name = "a post not held here"
        info = store.feed_info(entry.author)
        return PostView(
            id=entry.id,
            item_id=item.entry.id,
            author=entry.author,
            author_name=self.local.display_name(entry.author),
            author_short=short_feed_id(entry.author),
            timestamp=entry.header.timestamp,
            text=post.text if post is not None and not shown.deleted else "",
            cw=post.cw if post is not None else None,
            reply_to=post.parent if post is not None else None,
            reply_to_name=parent_name,
            root=post.root if post is not None else None,
            tags=tuple(post.tags) if post is not None else (),
            reactions=store.reactions(entry.id),
            reposts=store.reposts(entry.id),
            liked=store.reacted(entry.id, me),
            reposted_by=reposted_by,
            deleted=shown.deleted,
            forked=bool(info and info.forked),
            cursor=item.cursor,
            depth=depth,
            reason=reason,
        )

    def _missing(
        self, item: StoredEntry, entry_id: bytes, author: bytes, reposted_by: str, reason: str
    ) -> PostView:
        return PostView(
            id=entry_id,
            item_id=item.entry.id,
            author=author,
            author_name=self.local.display_name(author),
            author_short=short_feed_id(author),
            timestamp=item.entry.header.timestamp,
            text="",
            cw=None,
            reply_to=None,
            reply_to_name=None,
            root=None,
            tags=(),
            reactions={},
            reposts=0,
            liked=False,
            reposted_by=reposted_by,
            deleted=False,
            forked=False,
            cursor=item.cursor,
            held=False,
            reason=reason,
        )
