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

__all__ = ["MAX_DEPTH", "check_tree", "packb", "unpack_untrusted"]

#: The deepest nesting of arrays and maps allowed anywhere.
MAX_DEPTH = 8

_SCALARS = (type(None), bool, int, str, bytes)


def _tree_problem(value: object, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    if isinstance(value, msgpack.ExtType):
        # A namedtuple, so this test comes before the one for arrays.
        return "extension types are not allowed"
    if isinstance(value, _SCALARS):
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            return "integer out of the 64-bit range"
        return None
    if isinstance(value, list | tuple):
        for item in value:
            problem = _tree_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        keys = list(value)
        if not all(type(key) is str for key in keys):
            return "map key is not a string"
        if keys != sorted(keys):
            return "map keys are not sorted"
        for item in value.values():
            problem = _tree_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"value of type {type(value).__name__} is not allowed"


_PLAIN: Final = frozenset({type(None), bool, str, bytes})
_INT_LOW: Final = -(2**63)
_INT_END: Final = 2**64


def _plainly_fine(value: Any, depth: int) -> bool:
    # A quick pass (every entry is checked twice on ingest) that only ever says
    # True for values _tree_problem accepts; on any doubt the full check runs.
    kind = type(value)
    if kind in _PLAIN:
        return depth <= MAX_DEPTH
    if kind is int:
        return depth <= MAX_DEPTH and _INT_LOW <= value < _INT_END
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        keys = list(value)
        for key in keys:
            if type(key) is not str:
                return False
        if keys != sorted(keys):
            return False
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return False
    for item in items:
        kind = type(item)
        if kind in _PLAIN or (kind is int and _INT_LOW <= item < _INT_END):
            continue
        if not _plainly_fine(item, depth + 1):
            return False
    return True


def check_tree(value: object) -> str | None:
    """Return why ``value`` cannot be canonical msgpack, or ``None`` if it can."""
    if _plainly_fine(value, 0):
        return None
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
        value = msgpack.unpackb(
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
        raise MalformedEntry(f"{what} is not valid msgpack: {exc}", problem="decode") from exc
    problem = check_tree(value)
    if problem:
        raise MalformedEntry(f"{what} is not canonical: {problem}", problem="non-canonical")
    if msgpack.packb(value, use_bin_type=True) != data:
        raise MalformedEntry(
            f"{what} is not canonical: re-encoding gives other bytes", problem="non-canonical"
        )
    return value
