"""Payload kinds: what an entry says.

A payload is a canonical msgpack map whose fields depend on the entry's kind.
Optional fields are left out, never written as nil, so each payload has one
encoding. Text may not hold control characters other than newline and tab
(a post must not be able to drive the reader's terminal).

Kinds this version does not know are kept as :class:`UnknownPayload`: stored
and relayed, not shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from . import canonical
from .errors import InvalidArgument, MalformedEntry

__all__ = [
    "KNOWN_KINDS",
    "MAX_BIO_CHARS",
    "MAX_CW_CHARS",
    "MAX_EMOJI_CHARS",
    "MAX_MENTIONS",
    "MAX_NAME_CHARS",
    "MAX_PAYLOAD_SIZE",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_TEXT_CHARS",
    "Block",
    "Delete",
    "Follow",
    "Payload",
    "Post",
    "Profile",
    "React",
    "Repost",
    "Unblock",
    "Unfollow",
    "UnknownPayload",
    "decode_payload_untrusted",
    "encode_payload",
]

MAX_PAYLOAD_SIZE: Final = 16 * 1024
MAX_TEXT_CHARS: Final = 4096
MAX_CW_CHARS: Final = 256
MAX_TAGS: Final = 16
MAX_TAG_CHARS: Final = 64
MAX_MENTIONS: Final = 32
MAX_EMOJI_CHARS: Final = 16
MAX_NAME_CHARS: Final = 64
MAX_BIO_CHARS: Final = 1024

_ID_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class Post:
    """A post, or a reply when ``root`` and ``parent`` are set."""

    text: str
    root: bytes | None = None
    parent: bytes | None = None
    mentions: tuple[bytes, ...] = ()
    tags: tuple[str, ...] = ()
    cw: str | None = None

    kind = "post"


@dataclass(frozen=True, slots=True)
class Repost:
    """Shares another entry (``entry``, written by ``author``)."""

    entry: bytes
    author: bytes

    kind = "repost"


@dataclass(frozen=True, slots=True)
class React:
    """A reaction to an entry; a like is a react with a heart."""

    entry: bytes
    author: bytes
    emoji: str

    kind = "react"


@dataclass(frozen=True, slots=True)
class Follow:
    feed: bytes
    kind = "follow"


@dataclass(frozen=True, slots=True)
class Unfollow:
    feed: bytes
    kind = "unfollow"


@dataclass(frozen=True, slots=True)
class Block:
    feed: bytes
    kind = "block"


@dataclass(frozen=True, slots=True)
class Unblock:
    feed: bytes
    kind = "unblock"


@dataclass(frozen=True, slots=True)
class Profile:
    """The author's display name and bio; each left out means "unchanged"."""

    name: str | None = None
    bio: str | None = None

    kind = "profile"


@dataclass(frozen=True, slots=True)
class Delete:
    """Asks every node to drop the payload of the author's own earlier entry."""

    entry: bytes
    kind = "delete"


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload of a kind this version does not know; ``fields`` as decoded."""

    kind: str
    fields: dict[str, Any]


Payload = (
    Post | Repost | React | Follow | Unfollow | Block | Unblock | Profile | Delete | UnknownPayload
)

KNOWN_KINDS: Final = frozenset(
    {"post", "repost", "react", "follow", "unfollow", "block", "unblock", "profile", "delete"}
)


# --- field rules, shared by encoding (caller errors) and decoding (peer errors)


class _FieldProblem(Exception):
    pass


# The control characters (general category Cc) are U+0000-U+001F and
# U+007F-U+009F in every Unicode version; a regex finds the first at C speed.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE_TAB: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _text(value: object, name: str, max_chars: int, *, multiline: bool) -> str:
    if not isinstance(value, str):
        raise _FieldProblem(f"{name} must be a string")
    if not value:
        raise _FieldProblem(f"{name} must not be empty")
    if len(value) > max_chars:
        raise _FieldProblem(f"{name} has {len(value)} characters, more than {max_chars}")
    control = (_CONTROL_BUT_NEWLINE_TAB if multiline else _CONTROL).search(value)
    if control:
        raise _FieldProblem(f"{name} holds the control character U+{ord(control[0]):04X}")
    return value


def _id(value: object, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != _ID_SIZE:
        raise _FieldProblem(f"{name} must be {_ID_SIZE} bytes")
    return value


def _ids(value: object, name: str, max_items: int) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise _FieldProblem(f"{name} must be a non-empty array")
    if len(value) > max_items:
        raise _FieldProblem(f"{name} has {len(value)} items, more than {max_items}")
    items = tuple(_id(item, name) for item in value)
    if len(set(items)) != len(items):
        raise _FieldProblem(f"{name} has duplicates")
    return items


# Tag rules use fixed character sets, not str.lower() or str.isspace(): those
# follow the Unicode version of the running Python, and nodes on different
# versions must agree on which entries are valid.
_TAG_FORBIDDEN: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ#"
    "\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise _FieldProblem("tags must be a non-empty array")
    if len(value) > MAX_TAGS:
        raise _FieldProblem(f"tags has {len(value)} items, more than {MAX_TAGS}")
    tags = tuple(_text(tag, "tag", MAX_TAG_CHARS, multiline=False) for tag in value)
    for tag in tags:
        if any(char in _TAG_FORBIDDEN for char in tag):
            raise _FieldProblem(f"tag {tag!r} must be without spaces, '#' or A-Z")
    if len(set(tags)) != len(tags):
        raise _FieldProblem("tags has duplicates")
    return tags


def _fields(value: object, required: tuple[str, ...]) -> dict[str, Any]:
    # Fields this version does not know are allowed and ignored (they stay in
    # the stored bytes), so a later version can add optional fields to a kind
    # without older nodes refusing its entries and, with them, the rest of the log.
    # ``required`` is in sorted order: the first missing one is named.
    if not isinstance(value, dict):
        raise _FieldProblem("payload must be a map")
    for name in required:
        if name not in value:
            raise _FieldProblem(f"missing field {name!r}")
    return value


def _build(kind: str, value: object) -> Payload:
    if kind == "post":
        f = _fields(value, ("text",))
        if ("root" in f) != ("parent" in f):
            raise _FieldProblem("a reply needs both root and parent")
        return Post(
            text=_text(f["text"], "text", MAX_TEXT_CHARS, multiline=True),
            root=_id(f["root"], "root") if "root" in f else None,
            parent=_id(f["parent"], "parent") if "parent" in f else None,
            mentions=_ids(f["mentions"], "mentions", MAX_MENTIONS) if "mentions" in f else (),
            tags=_tags(f["tags"]) if "tags" in f else (),
            cw=_text(f["cw"], "cw", MAX_CW_CHARS, multiline=False) if "cw" in f else None,
        )
    if kind == "repost":
        f = _fields(value, ("author", "entry"))
        return Repost(entry=_id(f["entry"], "entry"), author=_id(f["author"], "author"))
    if kind == "react":
        f = _fields(value, ("author", "emoji", "entry"))
        return React(
            entry=_id(f["entry"], "entry"),
            author=_id(f["author"], "author"),
            emoji=_text(f["emoji"], "emoji", MAX_EMOJI_CHARS, multiline=False),
        )
    if kind in ("follow", "unfollow", "block", "unblock"):
        f = _fields(value, ("feed",))
        feed = _id(f["feed"], "feed")
        if kind == "follow":
            return Follow(feed=feed)
        if kind == "unfollow":
            return Unfollow(feed=feed)
        return Block(feed=feed) if kind == "block" else Unblock(feed=feed)
    if kind == "profile":
        f = _fields(value, ())
        return Profile(
            name=_text(f["name"], "name", MAX_NAME_CHARS, multiline=False)
            if "name" in f
            else None,
            bio=_text(f["bio"], "bio", MAX_BIO_CHARS, multiline=True) if "bio" in f else None,
        )
    if kind == "delete":
        f = _fields(value, ("entry",))
        return Delete(entry=_id(f["entry"], "entry"))
    if not isinstance(value, dict):
        raise _FieldProblem("payload must be a map")
    return UnknownPayload(kind=kind, fields=value)


def _to_map(payload: Payload) -> dict[str, Any]:
    if isinstance(payload, UnknownPayload):
        return payload.fields
    if isinstance(payload, Post):
        out: dict[str, Any] = {"text": payload.text}
        if payload.root is not None:
            out["root"] = payload.root
        if payload.parent is not None:
            out["parent"] = payload.parent
        if payload.mentions:
            out["mentions"] = list(payload.mentions)
        if payload.tags:
            out["tags"] = list(payload.tags)
        if payload.cw is not None:
            out["cw"] = payload.cw
        return out
    if isinstance(payload, Profile):
        return {
            key: value
            for key, value in (("name", payload.name), ("bio", payload.bio))
            if value is not None
        }
    return {name: getattr(payload, name) for name in payload.__slots__}


def encode_payload(payload: Payload) -> bytes:
    """Encode ``payload`` canonically.

    Raises :class:`InvalidArgument` when a field breaks the rules a decoder
    would apply (so a node never writes a payload its peers reject).
    """
    value = _to_map(payload)
    data = canonical.packb(value)
    if len(data) > MAX_PAYLOAD_SIZE:
        raise InvalidArgument(f"payload is {len(data)} bytes, more than {MAX_PAYLOAD_SIZE}")
    try:
        _build(payload.kind, canonical.unpack_untrusted(data, max_size=len(data), what="payload"))
    except _FieldProblem as exc:
        raise InvalidArgument(f"{payload.kind}: {exc}") from None
    return data


def decode_payload_untrusted(kind: str, data: bytes) -> Payload:
    """Decode and check the payload of an entry of ``kind``.

    Raises :class:`MalformedEntry` (problem ``"oversize"``, ``"decode"``,
    ``"non-canonical"`` or ``"bad-payload"``).
    """
    value = canonical.unpack_untrusted(data, max_size=MAX_PAYLOAD_SIZE, what="payload")
    try:
        return _build(kind, value)
    except _FieldProblem as exc:
        raise MalformedEntry(f"{kind} payload: {exc}", problem="bad-payload") from None
