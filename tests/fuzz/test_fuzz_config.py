"""The config file: mutated files (as bytes and as TOML trees) and documents
of the right keys with values of any type fail only with :class:`ConfigError`
(``node/home.py``, ``node/files.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import ConfigError

from .mutate import DrawnChoices, TomlTree, mutate
from .targets import TARGETS

CONFIG = TARGETS["config"]
CORPUS = CONFIG.corpus()
SECTIONS = {
    "timeline": ["limit", "algorithm", "fold_cw", "square_hops"],
    "network": ["listen", "bootstrap", "hops", "square", "network_key"],
    "moderation": ["mute", "hide_reposts", "words", "tags"],
    "petnames": ["torv1" + "a" * 55, "alice"],
}
VALUES = st.recursive(
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=70)
    | st.sampled_from(["0.0.0.0:4710", "[::1]:0", "ab" * 32, "latest", "torv1" + "a" * 55]),
    lambda children: st.lists(children, max_size=4),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def run() -> Iterator[Callable[[bytes], None]]:
    with contextlib.ExitStack() as stack:
        yield CONFIG.start(stack)


def test_the_corpus_is_valid(run: Callable[[bytes], None]) -> None:
    for data in CORPUS:
        run(data)


@settings(max_examples=100)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_config_files_fail_only_with_config_error(
    run: Callable[[bytes], None], valid: bytes, data: st.DataObject
) -> None:
    with contextlib.suppress(ConfigError):
        run(mutate(valid, CONFIG.layout, DrawnChoices(data), CORPUS))


DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        name: st.dictionaries(st.sampled_from(keys), VALUES, max_size=4)
        for name, keys in SECTIONS.items()
    },
)


@settings(max_examples=100)
@given(DOCUMENTS, st.data())
def test_settings_of_any_type_fail_only_with_config_error(
    run: Callable[[bytes], None], document: dict[str, Any], data: st.DataObject
) -> None:
    with contextlib.suppress(ConfigError):
        run(TomlTree().dump(document, DrawnChoices(data)))
