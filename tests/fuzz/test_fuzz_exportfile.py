"""Export files: mutated files whose trailer is recomputed (so a damaged
record is met before the checksum) raise only :class:`BadExportFile`."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.exportfile import read_export_untrusted

from .mutate import DrawnChoices, mutate
from .targets import TARGETS, accepts

EXPORT = TARGETS["export"]
RUN = EXPORT.start(contextlib.ExitStack())
CORPUS = EXPORT.corpus()


def test_the_corpus_is_valid() -> None:
    assert all(accepts(EXPORT, RUN, data) for data in CORPUS)


@settings(max_examples=100)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_files_raise_only_bad_export_file(valid: bytes, data: st.DataObject) -> None:
    accepts(EXPORT, RUN, mutate(valid, EXPORT.layout, DrawnChoices(data), CORPUS))


@given(
    st.lists(
        st.lists(
            st.none()
            | st.binary(max_size=80)
            | st.integers(-(2**63), 2**64 - 1)
            | st.text(max_size=5),
            max_size=4,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_records_of_any_shape_behind_a_good_trailer_are_refused(records: list[Any]) -> None:
    layout = EXPORT.layout
    data = layout.join([msgpack.packb(record, use_bin_type=True) for record in records])
    assert not accepts(EXPORT, RUN, data)


@settings(max_examples=60)
@given(st.sampled_from(CORPUS[:2]), st.data())
def test_a_file_that_reads_yields_what_was_written(valid: bytes, data: st.DataObject) -> None:
    """Whatever the mutation, an accepted file gives well-formed entries only."""
    mutated = mutate(valid, EXPORT.layout, DrawnChoices(data), CORPUS)
    if accepts(EXPORT, RUN, mutated):
        for entry in read_export_untrusted(io.BytesIO(mutated)):
            assert entry.header.encode() == entry.header_bytes
