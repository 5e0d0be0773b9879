"""Feed id text form and the key file (node/identity.py)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from node import (
    IdentityError,
    InvalidArgument,
    KeyFile,
    feed_id_from_text,
    feed_id_to_text,
    short_feed_id,
)

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
keys = st.binary(min_size=32, max_size=32)


def fixed_key(n: int = 7) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


def public_of(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


# --- the text form of feed ids ------------------------------------------------


@given(keys)
def test_feed_id_text_round_trips(key: bytes) -> None:
    text = feed_id_to_text(key)
    assert len(text) == 60
    assert text.startswith("torv1")
    assert set(text[5:]) <= set(BASE32)
    assert feed_id_from_text(text) == key


@given(keys, st.data())
def test_a_changed_character_is_rejected(key: bytes, data: st.DataObject) -> None:
    text = feed_id_to_text(key)
    index = data.draw(st.integers(min_value=5, max_value=59), label="index")
    other = data.draw(st.sampled_from(BASE32).filter(lambda c: c != text[index]), label="char")
    with pytest.raises(InvalidArgument):
        feed_id_from_text(text[:index] + other + text[index + 1 :])


@pytest.mark.parametrize(
    "key", [bytes(32), bytes(range(32)), b"\xff" * 32], ids=["zeros", "counting", "ones"]
)
def test_every_other_last_character_is_rejected(key: bytes) -> None:
    # The last character carries 2 bits of the checksum and 3 padding bits:
    # only one character is the feed id, or one key would have several texts.
    text = feed_id_to_text(key)
    for other in BASE32.replace(text[-1], ""):
        with pytest.raises(InvalidArgument):
            feed_id_from_text(text[:-1] + other)


@given(keys, st.integers(min_value=0, max_value=59))
def test_truncated_text_is_rejected(key: bytes, length: int) -> None:
    with pytest.raises(InvalidArgument):
        feed_id_from_text(feed_id_to_text(key)[:length])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "a",
        lambda t: "torv2" + t[5:],
        lambda t: "xorv1" + t[5:],
        lambda t: t[:20] + "0" + t[21:],  # not in the base32 alphabet
        lambda t: t[:20] + "=" + t[21:],
        lambda t: t[5:] + "aaaaa",
        lambda t: "",
    ],
)
def test_malformed_text_is_rejected(mangle: Callable[[str], str]) -> None:
    with pytest.raises(InvalidArgument, match="not a feed id"):
        feed_id_from_text(mangle(feed_id_to_text(bytes(range(32)))))


@given(keys)
def test_the_body_may_be_upper_case_but_not_the_prefix(key: bytes) -> None:
    text = feed_id_to_text(key)
    assert feed_id_from_text("torv1" + text[5:].upper()) == key
    with pytest.raises(InvalidArgument):
        feed_id_from_text(text.upper())


def test_surrounding_whitespace_is_ignored() -> None:
    key = bytes(range(32))
    assert feed_id_from_text(f"  {feed_id_to_text(key)}\n") == key


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_only_32_byte_keys_have_a_text_form(size: int) -> None:
    with pytest.raises(InvalidArgument):
        feed_id_to_text(bytes(size))


@given(keys)
def test_short_form(key: bytes) -> None:
    short = short_feed_id(key)
    assert short == "@" + feed_id_to_text(key)[5:13]
    assert len(short) == 9


# --- the key file -------------------------------------------------------------


def test_create_writes_a_private_file_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    key = fixed_key()
    created = KeyFile.create(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert created.public == public_of(key)
    assert not created.encrypted
    loaded = KeyFile.load(path)
    assert loaded.public == public_of(key)
    assert not loaded.encrypted
    assert loaded.unlock().private_bytes_raw() == key.private_bytes_raw()
    assert json.loads(path.read_text())["public"] == feed_id_to_text(public_of(key))
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    KeyFile.create(path, fixed_key(1))
    before = path.read_bytes()
    with pytest.raises(IdentityError, match="already exists"):
        KeyFile.create(path, fixed_key(2))
    assert path.read_bytes() == before
    assert KeyFile.load(path).public == public_of(fixed_key(1))
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


def test_load_of_a_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="torv init"):
        KeyFile.load(tmp_path / "secret.key")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o601])
def test_load_refuses_a_file_others_can_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret.key"
    KeyFile.create(path, fixed_key())
    path.chmod(mode)
    with pytest.raises(IdentityError, match="chmod 600"):
        KeyFile.load(path)


def write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def key_fields(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "template.key"
    KeyFile.create(path, fixed_key())
    fields = json.loads(path.read_text())
    assert isinstance(fields, dict)
    return fields


def test_load_refuses_an_oversize_file(tmp_path: Path) -> None:
    fields = key_fields(tmp_path)
    # Valid JSON, but padded past the size limit.
    data = json.dumps(fields, indent=4000).encode()
    assert len(data) > 4096
    path = write_private(tmp_path / "secret.key", data)
    with pytest.raises(IdentityError, match="too large"):
        KeyFile.load(path)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"not json at all",
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b'"torv-secret-key"',
    ],
)
def test_load_refuses_malformed_json(tmp_path: Path, data: bytes) -> None:
    path = write_private(tmp_path / "secret.key", data)
    with pytest.raises(IdentityError, match="not a valid key file"):
        KeyFile.load(path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("torv-secret-key", 2),
        ("torv-secret-key", "1"),
        ("torv-secret-key", None),
        ("public", "torv1notafeedid"),
        ("public", 5),
        ("encryption", "rot13"),
    ],
)
def test_load_refuses_a_wrong_version_or_field(tmp_path: Path, field: str, value: object) -> None:
    fields = key_fields(tmp_path)
    fields[field] = value
    path = write_private(tmp_path / "secret.key", json.dumps(fields).encode())
    with pytest.raises(IdentityError, match="not a valid key file"):
        KeyFile.load(path)


@pytest.mark.parametrize("field", ["torv-secret-key", "public", "encryption"])
def test_load_refuses_a_missing_field(tmp_path: Path, field: str) -> None:
    fields = key_fields(tmp_path)
    del fields[field]
    path = write_private(tmp_path / "secret.key", json.dumps(fields).encode())
    with pytest.raises(IdentityError, match="not a valid key file"):
        KeyFile.load(path)


@pytest.mark.parametrize(
    "secret",
    [
        "zz" * 32,  # not hex
        "00" * 31,  # too short for a seed
        "01" * 32,  # a seed, but of another key
    ],
)
def test_unlock_of_a_damaged_plain_file(tmp_path: Path, secret: str) -> None:
    fields = key_fields(tmp_path)
    fields["secret"] = secret
    path = write_private(tmp_path / "secret.key", json.dumps(fields).encode())
    key_file = KeyFile.load(path)
    with pytest.raises(IdentityError, match="damaged"):
        key_file.unlock()


# --- encrypted key files (scrypt costs ~0.1 s per call) ------------------------


@pytest.fixture(scope="module")
def encrypted_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("encrypted") / "secret.key"
    KeyFile.create(path, fixed_key(), passphrase="correct horse")
    return path


def copy_with(tmp_path: Path, source: Path, **changes: object) -> Path:
    fields = json.loads(source.read_text())
    for name, value in changes.items():
        fields[name] = value
    return write_private(tmp_path / "secret.key", json.dumps(fields).encode())


def test_encrypted_file_hides_the_seed(encrypted_path: Path) -> None:
    assert stat.S_IMODE(encrypted_path.stat().st_mode) == 0o600
    key_file = KeyFile.load(encrypted_path)
    assert key_file.encrypted
    assert key_file.public == public_of(fixed_key())
    assert fixed_key().private_bytes_raw().hex() not in encrypted_path.read_text()


def test_unlock_with_the_passphrase(encrypted_path: Path) -> None:
    key = KeyFile.load(encrypted_path).unlock("correct horse")
    assert key.private_bytes_raw() == fixed_key().private_bytes_raw()


def test_unlock_with_a_wrong_passphrase(encrypted_path: Path) -> None:
    with pytest.raises(IdentityError, match="wrong passphrase"):
        KeyFile.load(encrypted_path).unlock("battery staple")


@pytest.mark.parametrize("passphrase", [None, ""])
def test_unlock_without_a_passphrase(encrypted_path: Path, passphrase: str | None) -> None:
    with pytest.raises(IdentityError, match="passphrase is needed"):
        KeyFile.load(encrypted_path).unlock(passphrase)


def test_tampered_ciphertext_is_rejected(tmp_path: Path, encrypted_path: Path) -> None:
    secret = json.loads(encrypted_path.read_text())["secret"]
    flipped = secret[:10] + format(int(secret[10], 16) ^ 1, "x") + secret[11:]
    path = copy_with(tmp_path, encrypted_path, secret=flipped)
    with pytest.raises(IdentityError):
        KeyFile.load(path).unlock("correct horse")


@pytest.mark.parametrize(
    "change",
    [{"n": 2**30}, {"n": 2**20, "r": 32}, {"n": 2**20, "r": 3}, {"n": 3000}, {"p": 99}],
)
def test_scrypt_parameters_out_of_range_are_refused_before_deriving(
    tmp_path: Path, encrypted_path: Path, change: dict[str, int]
) -> None:
    # A file asking for a huge scrypt cost (time or memory: 128 * n * r bytes)
    # must not make torv hang or exhaust memory.
    scrypt = json.loads(encrypted_path.read_text())["scrypt"]
    path = copy_with(tmp_path, encrypted_path, scrypt={**scrypt, **change})
    with pytest.raises(IdentityError, match="out of range"):
        KeyFile.load(path).unlock("correct horse")
