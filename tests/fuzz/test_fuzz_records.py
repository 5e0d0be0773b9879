"""DHT records and values: mutated signed records, and record maps with a
field of any shape, are refused with :class:`BadRecord` only; the storage
only ever holds valid values (``node/records.py``, ``node/discovery.py``)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.home import Config
from node.records import BadRecord, decode_record_untrusted, parse_address
from storage import ConfigError, InvalidArgument, canonical

from .mutate import DrawnChoices, mutate
from .targets import DHT_NOW, TARGETS, accepts, record_values

RECORDS = TARGETS["records"]
RUN = RECORDS.start(contextlib.ExitStack())
CORPUS = RECORDS.corpus()
RECORD = canonical.unpack_untrusted(record_values()[2], max_size=512, what="record")


def test_the_corpus_is_checked_for_every_kind_of_key() -> None:
    # Each value is valid under its own key and refused under the others.
    accepted = [accepts(RECORDS, RUN, data) for data in CORPUS]
    assert any(accepted)
    assert not all(accepted)


@settings(max_examples=100)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_values_are_refused_with_bad_record_only(
    valid: bytes, data: st.DataObject
) -> None:
    accepts(RECORDS, RUN, mutate(valid, RECORDS.layout, DrawnChoices(data), CORPUS))


@given(
    st.sampled_from(sorted(RECORD)),
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=70)
    | st.text(max_size=70)
    | st.lists(st.text(max_size=30) | st.integers(), max_size=10),
)
def test_a_record_with_any_field_value_is_refused(field: str, value: Any) -> None:
    changed = {**RECORD, field: value}
    with pytest.raises(BadRecord):
        decode_record_untrusted(canonical.packb(changed), DHT_NOW)


# --- regressions -------------------------------------------------------------------


@pytest.mark.parametrize("port", ["\u00b2", "\u0664\u0664", "\uff18\uff10", "4\u00b9"])
def test_a_port_of_non_ascii_digits_is_refused(port: str) -> None:
    # "²".isdigit() is true but int("²") raises ValueError, which escaped as
    # such from decode_record_untrusted and Config.parse; "٤٤" read as 44.
    with pytest.raises(InvalidArgument):
        parse_address("1.2.3.4:" + port)
    with pytest.raises(BadRecord):
        decode_record_untrusted(canonical.packb({**RECORD, "addrs": ["1.2.3.4:" + port]}), DHT_NOW)
    with pytest.raises(ConfigError):
        Config.parse(f'[network]\nlisten = "1.2.3.4:{port}"\n')
    with pytest.raises(ConfigError):
        Config.parse(f'[network]\nbootstrap = ["1.2.3.4:{port}"]\n')
