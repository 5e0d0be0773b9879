"""Structure-aware mutations of valid encodings, for the fuzz targets.

A mutation takes its choices from a :class:`Choices` source: a seeded
``random.Random`` in the long runs (``bench/fuzz/run.py``), Hypothesis draws
in the tests (:class:`DrawnChoices`, so that a failure shrinks). The same
engine serves both, so the long runs explore what the tests sample.

Each target's input has a :class:`Layout`: how it splits into pieces (the
parts of an entry, the messages of a stream, the records of an export file)
and how the pieces are joined back, lengths, checksums and encryption
recomputed, so that a mutated piece reaches the decoder behind them. A piece
that decodes as a tree (msgpack, or TOML for the config file) is mutated as a
tree: a node replaced by an arbitrary nested value, a key dropped or added, an
element repeated; the tree is encoded again canonically or not.
"""

from __future__ import annotations

import contextlib
import struct
import tomllib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgpack
from hypothesis import strategies as st

__all__ = [
    "INTERESTING_INTS",
    "Choices",
    "DrawnChoices",
    "Layout",
    "MsgpackTree",
    "Parts",
    "Stream",
    "TomlTree",
    "Tree",
    "Whole",
    "join_parts",
    "mutate",
    "mutate_bytes",
    "random_value",
    "split_parts",
]


class Choices(Protocol):
    """Where a mutation takes its choices from (``random.Random`` fits)."""

    def randrange(self, stop: int, /) -> int: ...

    def randbytes(self, n: int, /) -> bytes: ...


class DrawnChoices:
    """Choices drawn from Hypothesis, so that failing inputs shrink."""

    def __init__(self, data: st.DataObject) -> None:
        self._data = data

    def randrange(self, stop: int, /) -> int:
        return self._data.draw(st.integers(0, stop - 1))

    def randbytes(self, n: int, /) -> bytes:
        return self._data.draw(st.binary(min_size=n, max_size=n))


#: Integers at the edges of msgpack's encodings and of torv's own bounds.
INTERESTING_INTS: tuple[int, ...] = (
    0,
    1,
    -1,
    2,
    31,
    32,
    -32,
    -33,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**31 - 1,
    2**32 - 1,
    2**32,
    2**53 - 1,
    2**53,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**31),
    -(2**63),
)
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xC0, 0xC1, 0xC4, 0xD9, 0xDC, 0xDE, 0xDF, 0xFF)
_INTERESTING_LENGTHS = (0, 1, 16, 20, 31, 32, 33, 63, 64, 65, 255, 256, 4096)
_TEXTS = (
    "",
    "a",
    "square",
    "post",
    "feed/" + "00" * 32,
    "127.0.0.1:4710",
    "[::1]:1",
    "1.2.3.4:\u00b2",
    "\x00",
    "\x1b[2J",
    "\u202e",
    "\ud800",
    "#Tag",
    "é" * 70,
)


def _pick(rng: Choices, items: Sequence[Any]) -> Any:
    return items[rng.randrange(len(items))]


def random_value(rng: Choices, depth: int = 0, names: Sequence[str] = ()) -> Any:
    """An arbitrary msgpack-able value, nested at most a few levels.

    ``names`` are field names worth trying as map keys (a target's own).
    """
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return bool(rng.randrange(2))
    if kind == 2:
        return _pick(rng, INTERESTING_INTS)
    if kind == 3:
        return rng.randrange(2**16) - 2**15
    if kind == 4:
        return _pick(rng, _TEXTS)
    if kind == 5:
        return rng.randbytes(_pick(rng, _INTERESTING_LENGTHS[:11]))
    if kind == 6:
        return rng.randbytes(rng.randrange(40)).decode("latin-1")
    if kind == 7:
        return _pick(rng, (0.5, -0.0, float("inf"), msgpack.ExtType(1, b"x")))
    if kind in (8, 9):
        return [random_value(rng, depth + 1, names) for _ in range(rng.randrange(5))]
    keys: list[Any] = [*names, "", "v", "id", "type"]
    return {
        _pick(rng, keys) if rng.randrange(8) else rng.randbytes(2): random_value(
            rng, depth + 1, names
        )
        for _ in range(rng.randrange(5))
    }


def mutate_bytes(data: bytes, rng: Choices) -> bytes:
    """``data`` with one byte-level change: a flip, a cut, an insertion, ..."""
    out = bytearray(data)
    size = len(out)
    op = rng.randrange(9)
    if size == 0 or op == 0:
        position = rng.randrange(size + 1)
        out[position:position] = rng.randbytes(1 + rng.randrange(64))
    elif op == 1:
        out[rng.randrange(size)] ^= 1 << rng.randrange(8)
    elif op == 2:
        out[rng.randrange(size)] = _pick(rng, _INTERESTING_BYTES)
    elif op == 3:
        del out[rng.randrange(size) :]
    elif op == 4:
        start = rng.randrange(size)
        del out[start : start + 1 + rng.randrange(16)]
    elif op == 5:
        start = rng.randrange(size)
        chunk = out[start : start + 1 + rng.randrange(32)]
        position = rng.randrange(size + 1)
        out[position:position] = chunk
    elif op == 6:
        width = _pick(rng, (2, 4, 8))
        value = _pick(rng, INTERESTING_INTS) % (1 << (8 * width))
        position = rng.randrange(size)
        out[position : position + width] = value.to_bytes(width, "big")
    elif op == 7:
        out += rng.randbytes(1 + rng.randrange(256))
    else:
        out[rng.randrange(size)] = rng.randrange(256)
    return bytes(out)


# --- trees ----------------------------------------------------------------------


class Tree(Protocol):
    """How a piece decodes to a tree and encodes back."""

    def load(self, piece: bytes) -> Any: ...

    def dump(self, value: Any, rng: Choices) -> bytes: ...


class MsgpackTree:
    """msgpack pieces; encoded back canonically, or now and then not."""

    def load(self, piece: bytes) -> Any:
        return msgpack.unpackb(piece, raw=False, strict_map_key=False, use_list=True)

    def dump(self, value: Any, rng: Choices) -> bytes:
        style = rng.randrange(8)
        try:
            if style == 0:
                data: bytes = msgpack.packb(value, use_bin_type=False)
            elif style == 1:
                data = msgpack.packb(value, use_bin_type=True, use_single_float=True)
            else:
                data = msgpack.packb(_sorted(value), use_bin_type=True)
        except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
            data = msgpack.packb(None)
        return data


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: (type(item[0]).__name__, str(item[0])))
        return {key: _sorted(item) for key, item in items}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


class TomlTree:
    """TOML pieces (a config file), written back with a small TOML writer."""

    def load(self, piece: bytes) -> Any:
        return tomllib.loads(piece.decode("utf-8"))

    def dump(self, value: Any, rng: Choices) -> bytes:
        if not isinstance(value, dict):
            value = {"value": value}
        lines: list[str] = []
        tables: list[tuple[str, dict[Any, Any]]] = []
        for key, item in value.items():
            if isinstance(item, dict):
                tables.append((str(key), item))
            else:
                lines.append(f"{_toml_key(key)} = {_toml_value(item)}")
        for name, table in tables:
            lines.append(f"[{_toml_key(name)}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def _toml_key(key: Any) -> str:
    text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
    return _toml_string(text)


def _toml_string(text: str) -> str:
    escaped = "".join(
        char if char.isprintable() and char not in '"\\' else f"\\u{ord(char):04x}"
        for char in text
        if ord(char) <= 0xFFFF
    )
    return f'"{escaped}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bytes):
        return _toml_string(value.decode("latin-1"))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return '""'


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def mutate_tree(value: Any, rng: Choices, names: Sequence[str] = ()) -> Any:
    """``value`` with one node replaced, dropped, repeated or added to."""
    paths = _nodes(value)
    path = _pick(rng, paths)
    op = rng.randrange(5)
    if not path:
        return random_value(rng, 0, names) if op == 0 else _grow(value, rng, names)
    parent = _get(value, path[:-1])
    step = path[-1]
    if op == 0:
        del parent[step]
    elif op == 1 and isinstance(parent, list):
        parent.insert(step, parent[step])
    elif op == 2:
        parent[step] = _grow(parent[step], rng, names)
    else:
        parent[step] = random_value(rng, 1, names)
    return value


def _grow(node: Any, rng: Choices, names: Sequence[str]) -> Any:
    if isinstance(node, list):
        node.append(random_value(rng, 2, names))
        return node
    if isinstance(node, dict):
        node[_pick(rng, [*names, "extra"])] = random_value(rng, 2, names)
        return node
    if isinstance(node, int) and not isinstance(node, bool):
        return node + _pick(rng, (-1, 1, 2**32, -(2**32)))
    if isinstance(node, bytes) and node:
        return node[: rng.randrange(len(node))] if rng.randrange(2) else node + node[:1]
    if isinstance(node, str) and node:
        return node[: rng.randrange(len(node))] if rng.randrange(2) else node + node[:1]
    return random_value(rng, 2, names)


# --- layouts --------------------------------------------------------------------

_U16 = struct.Struct(">H")


def split_parts(data: bytes, count: int) -> list[bytes]:
    """``count`` parts: each but the last a u16 length and its bytes, the
    last one the rest. Short input gives short or empty parts (never fails)."""
    parts = []
    position = 0
    for _ in range(count - 1):
        length = int.from_bytes(data[position : position + 2], "big")
        parts.append(data[position + 2 : position + 2 + length])
        position = min(len(data), position + 2 + length)
    parts.append(data[position:])
    return parts


def join_parts(parts: Sequence[bytes]) -> bytes:
    """The inverse of :func:`split_parts`."""
    head = b"".join(_U16.pack(len(part)) + part for part in parts[:-1])
    return head + parts[-1]


_MSGPACK = MsgpackTree()


class Layout:
    """How an input splits into pieces that mutate one at a time.

    ``split`` returns ``None`` for input of another shape (then only bytes
    mutate); ``join`` recomputes what ties the pieces together. ``tree``
    decodes a piece for tree mutations; ``names`` are field names to try.
    """

    tree: Tree | None = _MSGPACK
    names: Sequence[str] = ()

    def split(self, data: bytes) -> list[bytes] | None:
        return [data]

    def join(self, pieces: list[bytes]) -> bytes:
        return b"".join(pieces)


class Whole(Layout):
    """The input is one piece."""

    def __init__(self, tree: Tree | None = _MSGPACK, names: Sequence[str] = ()) -> None:
        self.tree = tree
        self.names = names


class Parts(Layout):
    """``count`` parts in the :func:`split_parts` form."""

    def __init__(self, count: int, names: Sequence[str] = ()) -> None:
        self.count = count
        self.names = names

    def split(self, data: bytes) -> list[bytes] | None:
        return split_parts(data, self.count)

    def join(self, pieces: list[bytes]) -> bytes:
        return join_parts(pieces)


class Stream(Layout):
    """``prefix``, then bodies each behind a big-endian length of ``width``
    bytes, then what ``tail`` computes from the bytes before it."""

    def __init__(
        self,
        *,
        width: int = 4,
        prefix: bytes = b"",
        tail: Callable[[bytes, int], bytes] | None = None,
        names: Sequence[str] = (),
    ) -> None:
        self.width = width
        self.prefix = prefix
        self.tail = tail
        self.names = names

    def split(self, data: bytes) -> list[bytes] | None:
        if not data.startswith(self.prefix):
            return None
        bodies = []
        position = len(self.prefix)
        while position + self.width <= len(data):
            length = int.from_bytes(data[position : position + self.width], "big")
            if length == 0 and self.tail is not None:
                break
            end = position + self.width + length
            if end > len(data):
                return None
            bodies.append(data[position + self.width : end])
            position = end
        return bodies

    def join(self, pieces: list[bytes]) -> bytes:
        out = self.prefix + b"".join(
            len(piece).to_bytes(self.width, "big") + piece for piece in pieces
        )
        return out + self.tail(out, len(pieces)) if self.tail is not None else out


def mutate(data: bytes, layout: Layout, rng: Choices, donors: Sequence[bytes] = ()) -> bytes:
    """One to three mutations of ``data``, by piece where ``layout`` splits it.

    ``donors`` are other valid inputs of the same target, for splicing pieces.
    """
    for _ in range(1 + rng.randrange(3)):
        data = _mutate_once(data, layout, rng, donors)
    return data


def _mutate_once(data: bytes, layout: Layout, rng: Choices, donors: Sequence[bytes]) -> bytes:
    pieces = layout.split(data)
    if not pieces or rng.randrange(4) == 0:
        return mutate_bytes(data, rng)
    index = rng.randrange(len(pieces))
    op = rng.randrange(8)
    if op == 0 and len(pieces) > 1:
        del pieces[index]
    elif op == 1:
        pieces.insert(index, pieces[index])
    elif op == 2 and donors:
        donor = layout.split(_pick(rng, donors))
        if donor:
            pieces[index] = _pick(rng, donor)
    elif op in (3, 4, 5) and layout.tree is not None:
        pieces[index] = _mutate_piece_tree(pieces[index], layout, rng)
    else:
        pieces[index] = mutate_bytes(pieces[index], rng)
    return layout.join(pieces)


def _mutate_piece_tree(piece: bytes, layout: Layout, rng: Choices) -> bytes:
    assert layout.tree is not None
    with contextlib.suppress(Exception):  # a piece that does not decode mutates as bytes
        return layout.tree.dump(mutate_tree(layout.tree.load(piece), rng, layout.names), rng)
    return mutate_bytes(piece, rng)
