"""DHT datagrams into the hardened protocol: requests of any shape and
answers of any shape to calls in flight are dropped or answered; nothing
escapes to the event loop, and nothing is counted but decoding failures and
refusals (``node/discovery.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import umsgpack  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from .mutate import DrawnChoices, mutate
from .targets import TARGETS

DHT = TARGETS["dht"]
CORPUS = DHT.corpus()
NAMES = ["ping", "store", "find_node", "find_value", "stun", "other"]

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=30)
    | st.text(max_size=10)
    | st.sampled_from(NAMES),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def run() -> Iterator[Callable[[bytes], None]]:
    with contextlib.ExitStack() as stack:
        yield DHT.start(stack)


def test_the_corpus_is_handled(run: Callable[[bytes], None]) -> None:
    for data in CORPUS:
        run(data)


@settings(max_examples=100)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_datagrams_are_dropped_or_answered(
    run: Callable[[bytes], None], valid: bytes, data: st.DataObject
) -> None:
    run(mutate(valid, DHT.layout, DrawnChoices(data), CORPUS))


@settings(max_examples=100)
@given(st.sampled_from([b"\x00", b"\x01\x00", b"\x01\x01", b"\x01\x02", b"\x01\x03"]), VALUES)
def test_requests_and_answers_of_any_shape_are_dropped_or_answered(
    run: Callable[[bytes], None], kind: bytes, value: Any
) -> None:
    run(kind + bytes(21 - len(kind)) + umsgpack.packb(value))


@pytest.mark.parametrize("name", [["ping"], {"ping": 1}])
def test_an_unhashable_rpc_name_is_dropped_as_malformed(
    run: Callable[[bytes], None], name: object
) -> None:
    # Found while fuzzing: `data[0] not in _RPCS` raised TypeError for a list
    # or map, in a task nobody awaited (the loop's handler saw it, not the counters).
    run(b"\x00" + bytes(20) + umsgpack.packb([name, []]))
