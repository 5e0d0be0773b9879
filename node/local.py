"""The owner's node without the network: identity, store and config together.

:class:`LocalNode` turns what a person wants to do (post, reply, follow, ...)
into entries of their own log, and answers what they want to read (timeline,
feed, thread). Everything works offline; the networked node (issue 3) gossips
what is written here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage import (
    Block,
    Delete,
    Entry,
    Follow,
    IngestReport,
    InvalidArgument,
    NotFound,
    Payload,
    Post,
    Profile,
    React,
    Repost,
    Store,
    StoredEntry,
    Unblock,
    Unfollow,
    read_export_untrusted,
    write_export,
)
from storage.errors import BadExportFile, EntryError, IdentityError
from storage.payloads import MAX_MENTIONS, MAX_TAG_CHARS, MAX_TAGS

from .home import Config, Home, Setting
from .identity import (
    FEED_ID_PREFIX,
    KeyFile,
    feed_id_from_text,
    feed_id_to_text,
    generate_key,
    short_feed_id,
)

__all__ = ["LocalNode", "Thread", "ThreadItem"]

# A word longer than a tag may be is not a tag at all (rather than cut short).
_TAG = re.compile(r"(?<![\w#])#([^\s#]+)")
_MENTION = re.compile(r"(?<!\w)@(" + FEED_ID_PREFIX + r"[a-z2-7]{55}|[\w.-]{1,64})")
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""

PassphraseSource = Callable[[], str | None]


@dataclass(frozen=True, slots=True)
class ThreadItem:
    """One post in a thread, with its depth below the root (the root is 0)."""

    stored: StoredEntry
    depth: int


@dataclass(frozen=True, slots=True)
class Thread:
    """A post and every reply held here, in reading order (depth first)."""

    root_id: bytes
    items: tuple[ThreadItem, ...]


class LocalNode:
    """A data directory opened for its owner."""

    def __init__(
        self,
        home: Home,
        key_file: KeyFile,
        store: Store,
        config: Config,
        passphrase: PassphraseSource | None = None,
    ) -> None:
        self.home = home
        self.key_file = key_file
        self.store = store
        self.config = config
        self._passphrase = passphrase
        self._key: Ed25519PrivateKey | None = None

    @classmethod
    def init(
        cls, home: Home, *, passphrase: str | None = None, key: Ed25519PrivateKey | None = None
    ) -> KeyFile:
        """Create the identity in ``home``; raise :class:`IdentityError` if one
        exists, :class:`UnsafePermissions` if other users can reach ``home``."""
        home.create()
        home.check_private()
        return KeyFile.create(home.key_path, key or generate_key(), passphrase=passphrase)

    @classmethod
    def open(cls, home: Home, *, passphrase: PassphraseSource | None = None) -> LocalNode:
        """Open ``home``'s identity, store and config.

        The passphrase source is asked only when something must be signed.
        Every start path (the CLI's commands, ``torv run``, ``torv ui``,
        :mod:`node.testing`) comes through here, so this is where a data
        directory or a key file that other users can reach is refused
        (:class:`UnsafePermissions`, which is an :class:`IdentityError`).
        Raises :class:`IdentityError`, :class:`ConfigError` or :class:`StorageError`.
        """
        home.check_private()
        key_file = KeyFile.load(home.key_path)
        config = home.load_config()
        store = Store.open(home.store_path)
        return cls(home, key_file, store, config, passphrase)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> LocalNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def me(self) -> bytes:
        """The owner's feed id."""
        return self.key_file.public

    # --- names --------------------------------------------------------------

    def display_name(self, feed: bytes) -> str:
        """How to show ``feed``: petname, else ``~`` and its self-chosen name,
        else the short id. ``you`` for the owner."""
        if feed == self.me:
            return "you"
        petname = self.config.petnames.get(feed)
        if petname:
            return petname
        info = self.store.feed_info(feed)
        if info is not None and info.name:
            return f"~{info.name}"
        return short_feed_id(feed)

    def resolve_feed(self, text: str) -> bytes:
        """A feed from its full text id, a petname, or ``me``/``self``."""
        text = text.strip().removeprefix("@")
        if text in ("me", "self"):
            return self.me
        if text.startswith(FEED_ID_PREFIX):
            return feed_id_from_text(text)
        feed = self.config.petname_lookup(text)
        if feed is None:
            raise InvalidArgument(
                f"{text!r} is neither a feed id ({FEED_ID_PREFIX}...) nor a petname"
            )
        return feed

    def resolve_entry(self, text: str) -> StoredEntry:
        """An entry held here from its id or a unique prefix of 4+ hex digits."""
        return self.store.get(self.store.resolve_prefix(text))

    def set_setting(self, section: str, key: str, value: Setting) -> None:
        """Change one setting in ``config.toml`` and use it from now on
        (:meth:`Home.set_setting`; raises :class:`ConfigError`)."""
        self.home.set_setting(section, key, value)
        self.config = self.home.load_config()

    # --- writing ------------------------------------------------------------

    def signing_key(self) -> Ed25519PrivateKey:
        """The owner's secret key, unlocked once per session."""
        if self._key is None:
            passphrase = None
            if self.key_file.encrypted:
                passphrase = self._passphrase() if self._passphrase else None
                if not passphrase:
                    raise IdentityError(
                        "the key file is encrypted: give --passphrase-file or run in a terminal"
                    )
            self._key = self.key_file.unlock(passphrase)
        return self._key

    def publish(self, payload: Payload) -> Entry:
        """Append ``payload`` to the owner's log (committed when this returns)."""
        return self.store.append(self.signing_key(), payload)

    def post(self, text: str, *, reply_to: bytes | None = None, cw: str | None = None) -> Entry:
        """Post ``text``; ``#tags`` and ``@mentions`` in it are recorded.

        A reply names its parent and the thread's root, and mentions the
        parent's author.
        """
        root = parent = None
        mentions: list[bytes] = []
        if reply_to is not None:
            parent_entry = self.store.get(reply_to).entry
            if not isinstance(parent_entry.content, Post):
                raise InvalidArgument("only posts can be replied to")
            parent = parent_entry.id
            root = parent_entry.content.root or parent_entry.id
            if parent_entry.author != self.me:
                mentions.append(parent_entry.author)
        for feed in self._mentioned(text):
            if feed not in mentions:
                mentions.append(feed)
        tags: list[str] = []
        for match in _TAG.finditer(text):
            tag = match.group(1).rstrip(_TRAILING_PUNCTUATION).lower()
            if tag and len(tag) <= MAX_TAG_CHARS and tag not in tags:
                tags.append(tag)
        return self.publish(
            Post(
                text=text,
                root=root,
                parent=parent,
                mentions=tuple(mentions[:MAX_MENTIONS]),
                tags=tuple(tags[:MAX_TAGS]),
                cw=cw or None,
            )
        )

    def _mentioned(self, text: str) -> Iterator[bytes]:
        for match in _MENTION.finditer(text):
            word = match.group(1).rstrip(_TRAILING_PUNCTUATION)
            if word.startswith(FEED_ID_PREFIX):
                try:
                    yield feed_id_from_text(word)
                except InvalidArgument:
                    continue
            else:
                feed = self.config.petname_lookup(word)
                if feed is not None:
                    yield feed

    def react(self, entry_id: bytes, emoji: str = "♥") -> Entry:
        """React to an entry held here."""
        target = self.store.get(entry_id).entry
        return self.publish(React(entry=target.id, author=target.author, emoji=emoji))

    def repost(self, entry_id: bytes) -> Entry:
        """Repost a post held here."""
        target = self.store.get(entry_id).entry
        if not isinstance(target.content, Post):
            raise InvalidArgument("only posts can be reposted")
        return self.publish(Repost(entry=target.id, author=target.author))

    def follow(self, feed: bytes) -> Entry | None:
        """Follow ``feed``; ``None`` if already following (nothing is written)."""
        self._not_self(feed, "follow")
        if feed in self.store.following(self.me):
            return None
        return self.publish(Follow(feed=feed))

    def unfollow(self, feed: bytes) -> Entry | None:
        """Stop following ``feed``; ``None`` if not following."""
        if feed not in self.store.following(self.me):
            return None
        return self.publish(Unfollow(feed=feed))

    def block(self, feed: bytes) -> Entry | None:
        """Block ``feed`` and remove what the store holds of it (it is never
        replicated again while blocked); ``None`` if already blocked."""
        self._not_self(feed, "block")
        if feed in self.store.blocking(self.me):
            return None
        entry = self.publish(Block(feed=feed))
        self.store.purge(feed)
        return entry

    def unblock(self, feed: bytes) -> Entry | None:
        """Unblock ``feed``; ``None`` if not blocked."""
        if feed not in self.store.blocking(self.me):
            return None
        return self.publish(Unblock(feed=feed))

    def set_profile(self, *, name: str | None = None, bio: str | None = None) -> Entry:
        """Publish a new name and/or bio."""
        if name is None and bio is None:
            raise InvalidArgument("give a name, a bio, or both")
        return self.publish(Profile(name=name, bio=bio))

    def delete(self, entry_id: bytes) -> Entry:
        """Ask every node to drop the payload of one of the owner's own entries."""
        target = self.store.get(entry_id)
        if target.entry.author != self.me:
            raise InvalidArgument("you can only delete your own entries")
        if target.deleted:
            raise InvalidArgument("that entry is already deleted")
        return self.publish(Delete(entry=target.entry.id))

    def _not_self(self, feed: bytes, verb: str) -> None:
        if feed == self.me:
            raise InvalidArgument(f"you cannot {verb} yourself")

    # --- reading ------------------------------------------------------------

    def timeline(
        self, *, limit: int = 50, before: tuple[int, int] | None = None
    ) -> list[StoredEntry]:
        """Posts and reposts of the owner and the feeds they follow, newest first."""
        authors = {self.me, *self.store.following(self.me)}
        authors -= set(self.store.blocking(self.me))
        authors.add(self.me)
        return self.store.timeline(authors, limit=limit, before=before)

    def thread(self, entry_id: bytes) -> Thread:
        """The whole thread around ``entry_id`` (which may be any reply in it)."""
        entry = self.store.get(entry_id).entry
        content = entry.content
        root_id = content.root if isinstance(content, Post) and content.root else entry.id
        root = self.store.find(root_id)
        replies = self.store.replies(root_id)
        children: dict[bytes, list[StoredEntry]] = {}
        known = {reply.entry.id for reply in replies} | {root_id}
        for reply in replies:
            reply_content = reply.entry.content
            parent = reply_content.parent if isinstance(reply_content, Post) else None
            # A reply whose parent is missing here hangs from the root.
            children.setdefault(parent if parent in known else root_id, []).append(reply)
        items: list[ThreadItem] = []
        if root is not None:
            items.append(ThreadItem(root, 0))

        def walk(parent_id: bytes, depth: int) -> None:
            for child in children.get(parent_id, ()):
                items.append(ThreadItem(child, depth))
                walk(child.entry.id, depth + 1)

        walk(root_id, 1)
        return Thread(root_id, tuple(items))

    # --- moving logs --------------------------------------------------------

    def export(self, out: BinaryIO, feed: bytes | None = None) -> int:
        """Write ``feed``'s log (the owner's by default) as an export file."""
        author = self.me if feed is None else feed
        if self.store.latest_seq(author) == 0:
            raise NotFound(f"no entries of {feed_id_to_text(author)} in the store")
        return write_export(out, (stored.entry for stored in self.store.log(author)))

    def import_file(self, path: Path) -> IngestReport:
        """Check and store every entry of an export file, or none of them.

        Raises :class:`BadExportFile` naming what is wrong.
        """
        try:
            with path.open("rb") as inp:
                try:
                    return self.store.ingest(read_export_untrusted(inp), atomic=True)
                except EntryError as exc:
                    raise BadExportFile(f"{path}: nothing imported: {exc}") from exc
                except BadExportFile as exc:
                    raise BadExportFile(f"{path}: nothing imported: {exc}") from exc
        except OSError as exc:
            raise NotFound(f"cannot read {path}: {exc.strerror}") from None
