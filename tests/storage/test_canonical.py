"""Canonical msgpack: one value, one encoding, and a decoder that says so."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.canonical import MAX_DEPTH, check_tree, packb, unpack_untrusted
from storage.errors import InvalidArgument, MalformedEntry

LIMIT = 1 << 20


def unpack(data: bytes, max_size: int = LIMIT) -> Any:
    return unpack_untrusted(data, max_size=max_size, what="test value")


def nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def ordered(value: Any) -> Any:
    """``value`` with each map as its item list, so that key order counts in ==."""
    if isinstance(value, dict):
        return [("map",)] + [(key, ordered(item)) for key, item in value.items()]
    if isinstance(value, list | tuple):
        return [ordered(item) for item in value]
    return value


def sorted_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: sorted_value(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [sorted_value(item) for item in value]
    return value


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=20),
    st.binary(max_size=20),
)


def _values() -> st.SearchStrategy[Any]:
    # Built level by level so that no generated value is deeper than allowed:
    # the leaves of the outermost level sit at depth MAX_DEPTH.
    level: st.SearchStrategy[Any] = SCALARS
    for _ in range(MAX_DEPTH):
        level = st.one_of(
            SCALARS,
            st.lists(level, max_size=4),
            st.lists(level, max_size=3).map(tuple),
            st.dictionaries(st.text(max_size=8), level, max_size=4),
        )
    return level


VALUES = _values()


# --- packb -----------------------------------------------------------------


def test_packb_sorts_map_keys_by_their_utf8_bytes() -> None:
    data = packb({"b": 1, "a": 2, "\u00e9": 3, "Z": 4})
    assert list(msgpack.unpackb(data, raw=False)) == ["Z", "a", "b", "\u00e9"]
    assert data == packb({"\u00e9": 3, "Z": 4, "b": 1, "a": 2})


def test_packb_sorts_nested_maps() -> None:
    data = packb([{"y": {"q": 1, "p": 2}, "x": None}])
    assert data == msgpack.packb([{"x": None, "y": {"p": 2, "q": 1}}], use_bin_type=True)


def test_packb_writes_str_and_bytes_as_distinct_types() -> None:
    assert packb("a") == b"\xa1a"
    assert packb(b"a") == b"\xc4\x01a"


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        [0.0],
        {"x": 2.5},
        {1: "a"},
        {b"k": 1},
        {1: "a", "b": 2},  # keys that cannot even be sorted together
        {None: 1},
        msgpack.ExtType(1, b"x"),
        bytearray(b"x"),
        {1, 2},
        2**64,
        -(2**63) - 1,
        "\ud800",  # a lone surrogate has no UTF-8 form
        {"\udfff": 1},
        nested(MAX_DEPTH + 1),
    ],
    ids=repr,
)
def test_packb_rejects_values_without_a_canonical_form(value: object) -> None:
    with pytest.raises(InvalidArgument):
        packb(value)


def test_packb_depth_limit_is_exact() -> None:
    # docs/protocol.md 1.1 rule 7: depth counts values, so an empty innermost
    # array may sit one level deeper than a scalar.
    assert unpack(packb(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    with pytest.raises(InvalidArgument, match="deeper"):
        packb(nested(MAX_DEPTH + 1))
    empty: object = []
    for _ in range(MAX_DEPTH):
        empty = [empty]
    assert unpack(packb(empty)) == empty
    with pytest.raises(InvalidArgument, match="deeper"):
        packb([empty])


def test_packb_survives_absurd_nesting() -> None:
    value: object = {}
    for _ in range(5000):
        value = {"k": value}
    with pytest.raises(InvalidArgument, match="deeper"):
        packb(value)


def test_integer_range_edges() -> None:
    for value in (-(2**63), 2**64 - 1, 0, -1, 127, 128, -32, -33):
        assert unpack(packb(value)) == value


def test_check_tree_names_the_problem() -> None:
    assert check_tree({"a": [1, b"x", None, True]}) is None
    assert check_tree({"b": 1, "a": 2}) == "map keys are not sorted"
    assert check_tree({1: 1}) == "map key is not a string"
    assert check_tree(1.0) == "value of type float is not allowed"


# --- unpack_untrusted --------------------------------------------------------


def test_unpack_rejects_oversize_input_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> object:
        raise AssertionError("msgpack was called on oversize input")

    data = packb("x" * 100)
    monkeypatch.setattr(msgpack, "unpackb", no_decoding)
    with pytest.raises(MalformedEntry) as info:
        unpack(data, max_size=len(data) - 1)
    assert info.value.problem == "oversize"


def test_unpack_accepts_input_of_exactly_max_size() -> None:
    data = packb("x" * 100)
    assert unpack(data, max_size=len(data)) == "x" * 100


def test_unpack_limits_lengths_inside_the_input() -> None:
    # An array header claiming 2**32 - 1 items must not allocate for them.
    with pytest.raises(MalformedEntry) as info:
        unpack(b"\xdd\xff\xff\xff\xff", max_size=16)
    assert info.value.problem == "decode"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xcc\x05", "non-canonical"),  # 5 as uint8: the shortest form is one byte
        (b"\xd0\x05", "non-canonical"),  # 5 as int8
        (b"\xcd\x00\x05", "non-canonical"),  # 5 as uint16
        (b"\xd9\x01a", "non-canonical"),  # "a" as str8
        (b"\xdc\x00\x01\x01", "non-canonical"),  # [1] as array16
        (b"\xde\x00\x01\xa1a\x01", "non-canonical"),  # {"a": 1} as map16
        (b"\x82\xa1b\x01\xa1a\x02", "non-canonical"),  # {"b": 1, "a": 2}: unsorted
        (b"\x82\xa1a\x01\xa1a\x02", "non-canonical"),  # "a" twice
        (b"\x81\xc4\x01a\x01", "non-canonical"),  # a bytes key
        (b"\x81\x01\x01", "decode"),  # an int key: strict_map_key refuses it
        (b"\x01\x02", "decode"),  # trailing bytes
        (b"\x92\x01", "decode"),  # truncated array
        (b"", "decode"),
        (b"\xa2\xc3\x28", "decode"),  # invalid UTF-8 in a str
        (b"\xa1\x80", "decode"),
        (b"\xcb" + b"\x00" * 8, "non-canonical"),  # float64
        (b"\xca" + b"\x00" * 4, "non-canonical"),  # float32
        (b"\xd4\x01\x00", "decode"),  # fixext1: extension types are not allowed
        (b"\xc7\x00\x05", "non-canonical"),  # an empty ext8
        (b"\xd6\xff\x00\x00\x00\x00", "decode"),  # a msgpack timestamp
        (b"\xc1", "decode"),  # the never-used byte
        (b"\x91" * 2000 + b"\x01", "decode"),  # deeper than msgpack's stack
        (b"\x91" * (MAX_DEPTH + 1) + b"\x01", "non-canonical"),
    ],
    ids=lambda value: value.hex()[:24] if isinstance(value, bytes) else value,
)
def test_unpack_rejects(data: bytes, problem: str) -> None:
    with pytest.raises(MalformedEntry) as info:
        unpack(data)
    assert info.value.problem == problem


def test_unpack_accepts_the_canonical_forms_of_the_rejected_values() -> None:
    assert unpack(b"\x05") == 5
    assert unpack(b"\xa1a") == "a"
    assert unpack(b"\x82\xa1a\x02\xa1b\x01") == {"a": 2, "b": 1}
    assert unpack(b"\x91" * MAX_DEPTH + b"\x01") == nested(MAX_DEPTH)


def test_unpack_errors_chain_the_cause() -> None:
    with pytest.raises(MalformedEntry) as info:
        unpack(b"\x01\x02")
    assert isinstance(info.value.__cause__, ValueError)


# --- properties ----------------------------------------------------------------


@given(VALUES)
def test_unpack_of_packb_is_the_sorted_value(value: Any) -> None:
    data = packb(value)
    decoded = unpack(data)
    assert ordered(decoded) == ordered(sorted_value(value))
    assert packb(decoded) == data


@given(VALUES)
def test_msgpack_default_encoding_of_a_sorted_value_is_canonical(value: Any) -> None:
    data = msgpack.packb(sorted_value(value), use_bin_type=True)
    assert unpack(data) == sorted_value(value)
    assert packb(value) == data


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_unpack_of_arbitrary_bytes_raises_only_malformed_entry(data: bytes) -> None:
    try:
        value = unpack(data, max_size=48)
    except MalformedEntry as exc:
        problem = exc.problem
    else:
        # Whatever is accepted is the one encoding of what it decodes to.
        assert packb(value) == data
        return
    assert problem in {"oversize", "decode", "non-canonical"}


@settings(max_examples=300)
@given(VALUES, st.data())
def test_unpack_of_a_mutated_encoding_is_rejected_or_canonical(value: Any, data: Any) -> None:
    encoded = bytearray(packb(value))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255).filter(lambda b: b != encoded[position]))
    try:
        decoded = unpack(bytes(encoded))
    except MalformedEntry:
        return
    assert packb(decoded) == bytes(encoded)
