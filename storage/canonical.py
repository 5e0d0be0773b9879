"""Canonical msgpack: one value, one encoding.

The canonical form is what ``msgpack`` writes with ``use_bin_type=True`` for
a value made only of nil, booleans, integers, UTF-8 strings, byte strings,
arrays and maps whose keys are strings sorted by their UTF-8 bytes. Floats and
extension types are not allowed. Every integer, string, byte string, array and
map uses its shortest header, which ``msgpack`` does by construction.

A decoder of untrusted bytes unpacks with explicit limits, checks the shape
(:func:`check_tree`), re-encodes, and rejects the input unless the bytes are
the same. So a logical value has exactly one encoding, and a hash over the
bytes names the value.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from .errors import InvalidArgument, MalformedEntry

__all__ = ["MAX_DEPTH", "check_tree", "packb", "unpack_bounded", "unpack_untrusted"]

#: The deepest nesting of arrays and maps allowed anywhere.
MAX_DEPTH = 8

# Exact types, not isinstance: decoders only ever produce these, and a
# subclass (an ExtType is a tuple, a bool is an int) must not pass as another.
_PLAIN: Final = frozenset({type(None), bool, str, bytes})
_INT_LOW: Final = -(2**63)
_INT_END: Final = 2**64


def _tree_problem(value: Any, depth: int) -> str | None:
    # Every entry is checked twice on ingest (header and payload), so scalar
    # children are checked inline instead of by a call each.
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    kind = type(value)
    if kind in _PLAIN:
        return None
    if kind is int:
        return None if _INT_LOW <= value < _INT_END else "integer out of the 64-bit range"
    if kind is dict:
        # Python orders str by code point, as UTF-8 orders bytes; a decoded
        # map has no repeated key, so each key is above the one before.
        previous = None
        for key in value:
            if type(key) is not str:
                return "map key is not a string"
            if previous is not None and key <= previous:
                return "map keys are not sorted"
            previous = key
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif kind is msgpack.ExtType:
        return "extension types are not allowed"
    else:
        return f"value of type {kind.__name__} is not allowed"
    inline = depth < MAX_DEPTH
    for item in items:
        item_kind = type(item)
        if inline and (item_kind in _PLAIN or (item_kind is int and _INT_LOW <= item < _INT_END)):
            continue
        problem = _tree_problem(item, depth + 1)
        if problem:
            return problem
    return None


def check_tree(value: object) -> str | None:
    """Return why ``value`` cannot be canonical msgpack, or ``None`` if it can."""
    return _tree_problem(value, 0)


def _sorted(value: Any, depth: int = 0) -> Any:
    # Past the depth limit, in an extension type or with a non-string key there
    # is nothing to sort: check_tree rejects the value, and sorting anyway would
    # raise TypeError on keys of mixed types or recurse without bound.
    if depth > MAX_DEPTH or isinstance(value, msgpack.ExtType):
        return value
    if isinstance(value, dict):
        if not all(type(key) is str for key in value):
            return value
        return {key: _sorted(value[key], depth + 1) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(item, depth + 1) for item in value]
    return value


def packb(value: object) -> bytes:
    """Encode ``value`` canonically, sorting map keys.

    Raises :class:`InvalidArgument` for values that have no canonical form
    (floats, non-string map keys, other types, too deep, integers out of range,
    strings that are not valid Unicode).
    """
    value = _sorted(value)
    problem = check_tree(value)
    if problem:
        raise InvalidArgument(f"cannot encode canonically: {problem}")
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True)
    except UnicodeEncodeError as exc:
        # A str holding a lone surrogate has no UTF-8 form.
        raise InvalidArgument(f"cannot encode canonically: {exc}") from exc
    return data


def unpack_bounded(data: bytes, *, max_size: int) -> Any:
    """Decode untrusted msgpack: every string, byte string, array and map at
    most ``max_size`` long, no extension types, map keys strings (or bytes).

    The canonical form is not checked (:func:`unpack_untrusted` does that).
    Raises :class:`ValueError` saying why the bytes do not decode; nothing
    else escapes for any input.
    """
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=max_size,
            max_map_len=max_size,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def unpack_untrusted(data: bytes, *, max_size: int, what: str) -> Any:
    """Decode untrusted canonical msgpack of at most ``max_size`` bytes.

    ``what`` names the thing in error messages (``"header"``, ``"payload"``).
    Raises :class:`MalformedEntry` with problem ``"oversize"``, ``"decode"`` or
    ``"non-canonical"``; nothing else escapes for any input.
    """
    if len(data) > max_size:
        raise MalformedEntry(
            f"{what} is {len(data)} bytes, more than the {max_size} allowed", problem="oversize"
        )
    try:
        value = unpack_bounded(data, max_size=max_size)
    except ValueError as exc:
        raise MalformedEntry(f"{what} is not valid msgpack: {exc}", problem="decode") from exc
    problem = check_tree(value)
    if problem:
        raise MalformedEntry(f"{what} is not canonical: {problem}", problem="non-canonical")
    if msgpack.packb(value, use_bin_type=True) != data:
        raise MalformedEntry(
            f"{what} is not canonical: re-encoding gives other bytes", problem="non-canonical"
        )
    return value
