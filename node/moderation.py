"""Moderation that stays on your machine: mutes, filters, hidden reposts.

Blocks and follows are published entries (others can see whom you block);
everything here is private. It lives in ``config.toml`` (``[moderation]``
and ``[timeline]``), is never written to your log and never sent to a peer,
and applies to every timeline algorithm's result after it ranks.

- ``mute``: the feed is still replicated (you can unmute and read at once),
  but its posts, replies and reposts are hidden everywhere.
- ``hide_reposts``: that feed's own posts show, its reposts do not.
- ``words``, ``tags``: a post whose text or content warning contains a word
  (case-insensitive), or that carries a tag, is hidden, and so is a repost
  of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import Post, Repost, StoredEntry

from .home import Config

__all__ = ["Moderation"]


@dataclass(frozen=True, slots=True)
class Moderation:
    mute: frozenset[bytes] = frozenset()
    hide_reposts: frozenset[bytes] = frozenset()
    words: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> Moderation:
        return cls(config.mute, config.hide_reposts, config.filter_words, config.filter_tags)

    def hidden(self, item: StoredEntry, shown: StoredEntry | None = None) -> str | None:
        """Why ``item`` is hidden, or ``None`` if it shows. For a repost,
        ``shown`` is the post it carries (if held)."""
        author = item.entry.author
        if author in self.mute:
            return "muted"
        if isinstance(item.entry.content, Repost):
            if author in self.hide_reposts:
                return "reposts hidden"
            if item.entry.content.author in self.mute:
                return "muted"
        post = (shown or item).entry.content
        if isinstance(post, Post):
            text = f"{post.text}\n{post.cw or ''}".casefold()
            for word in self.words:
                if word in text:
                    return f"filtered word {word!r}"
            for tag in post.tags:
                if tag.casefold() in self.tags:
                    return f"filtered tag #{tag}"
        return None
