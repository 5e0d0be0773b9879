"""Every reader of outside input, fed arbitrary input, either succeeds or
raises its one narrow error: never another exception, never a crash."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from node.home import Config
from node.identity import KeyFile, feed_id_from_text
from storage import BadExportFile, ConfigError, IdentityError, InvalidArgument
from storage.exportfile import MAGIC, read_export_untrusted


@given(st.binary(max_size=300))
def test_export_reader_on_arbitrary_bytes(data: bytes) -> None:
    for prefix in (b"", MAGIC):
        with contextlib.suppress(BadExportFile):
            list(read_export_untrusted(io.BytesIO(prefix + data)))


@given(st.lists(st.binary(max_size=40), max_size=4), st.binary(max_size=60))
def test_export_reader_on_length_prefixed_garbage(records: list[bytes], tail: bytes) -> None:
    body = b"".join(len(r).to_bytes(4, "big") + r for r in records)
    with contextlib.suppress(BadExportFile):
        list(read_export_untrusted(io.BytesIO(MAGIC + body + tail)))


@given(st.binary(max_size=600))
def test_key_file_on_arbitrary_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "secret.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with contextlib.suppress(IdentityError):
            KeyFile.load(path).unlock("passphrase")


@given(
    st.dictionaries(
        st.sampled_from(["torv-secret-key", "public", "encryption", "secret", "scrypt", "nonce"]),
        st.none()
        | st.integers()
        | st.text(max_size=70)
        | st.dictionaries(st.text(max_size=4), st.integers()),
    )
)
def test_key_file_on_arbitrary_json_fields(fields: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "secret.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(fields, f)
        with contextlib.suppress(IdentityError):
            KeyFile.load(path).unlock("passphrase")


@given(st.text(max_size=300))
def test_config_on_arbitrary_text(text: str) -> None:
    with contextlib.suppress(ConfigError):
        Config.parse(text)


@given(st.text(max_size=80))
def test_feed_id_parser_on_arbitrary_text(text: str) -> None:
    try:
        key = feed_id_from_text(text)
    except InvalidArgument:
        return
    assert len(key) == 32
