"""The test vectors of docs/protocol.md, checked against the code.

The vectors are read from the document itself (never from
docs/make_vectors.py), so the document and the code cannot drift apart
unnoticed: a change in the format fails here until the document is
regenerated, and a hand edit of the document fails here too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from node.home import Config
from node.identity import (
    FEED_ID_PREFIX,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    KeyFile,
    feed_id_from_text,
    feed_id_to_text,
    short_feed_id,
)
from storage import (
    BadExportFile,
    Block,
    Delete,
    Entry,
    Follow,
    InvalidArgument,
    MalformedEntry,
    Payload,
    Post,
    Profile,
    React,
    Repost,
    Store,
    Unblock,
    Unfollow,
    create_entry,
    decode_entry_untrusted,
    decode_payload_untrusted,
    encode_payload,
    read_export_untrusted,
    write_export,
)
from storage.canonical import MAX_DEPTH
from storage.entry import MAX_HEADER_SIZE, MAX_SEQ, MAX_TIMESTAMP, SIGNATURE_DOMAIN, VERSION
from storage.exportfile import MAGIC, MAX_RECORD_SIZE
from storage.payloads import (
    MAX_BIO_CHARS,
    MAX_CW_CHARS,
    MAX_EMOJI_CHARS,
    MAX_MENTIONS,
    MAX_NAME_CHARS,
    MAX_PAYLOAD_SIZE,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
)

DOC = Path(__file__).parents[1] / "docs" / "protocol.md"

Vector = dict[str, str]

_BLOCK = re.compile(r"^```vector\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_KEY = re.compile(r"[a-z0-9-]+\Z")
_HEX = re.compile(r"(?:[0-9a-f]{2})*\Z")

ENTRY_NAMES = [f"entry-{n}" for n in range(1, 7)]
NON_CANONICAL_NAMES = [
    "non-canonical-unsorted-keys",
    "non-canonical-long-string",
    "non-canonical-header-int",
]

# Payload fields written as hex in a vector's `value` (section 7.1 of the doc).
_ID_FIELDS = frozenset({"root", "parent", "entry", "author", "feed"})
_ID_LIST_FIELDS = frozenset({"mentions"})
_PAYLOAD_TYPES: dict[str, Callable[..., Payload]] = {
    "post": Post,
    "repost": Repost,
    "react": React,
    "follow": Follow,
    "unfollow": Unfollow,
    "block": Block,
    "unblock": Unblock,
    "profile": Profile,
    "delete": Delete,
}


def parse_vectors(text: str) -> dict[str, Vector]:
    """The vector blocks of ``text`` by name, in the format of the doc's section 7.1."""
    vectors: dict[str, Vector] = {}
    blocks = _BLOCK.findall(text)
    assert len(blocks) == text.count("```vector\n"), "a vector block is not closed"
    for body in blocks:
        fields: Vector = {}
        last: str | None = None
        for line in body.splitlines():
            if not line.strip():
                continue
            if line.startswith("  "):
                assert last is not None, f"continuation line with no key: {line!r}"
                fields[last] += "".join(line.split())
                continue
            key, colon, value = line.partition(":")
            assert colon, f"not a `key: value` line: {line!r}"
            assert _KEY.match(key), f"bad key {key!r}"
            assert key not in fields, f"key {key!r} repeats"
            fields[key] = value.strip()
            last = key
        name = next(iter(fields))
        assert name == "vector", f"a block starts with {name!r}, not `vector`"
        assert fields["vector"] not in vectors, f"vector {fields['vector']!r} repeats"
        vectors[fields["vector"]] = fields
    return vectors


def hexval(vector: Vector, key: str) -> bytes:
    value = vector[key]
    assert _HEX.match(value), f"{vector['vector']}.{key} is not lowercase hex"
    return bytes.fromhex(value)


def payload_from_value(kind: str, value: dict[str, Any]) -> Payload:
    """The payload a vector's `value` line describes."""
    fields: dict[str, Any] = {}
    for name, item in value.items():
        if name in _ID_FIELDS:
            fields[name] = bytes.fromhex(item)
        elif name in _ID_LIST_FIELDS:
            fields[name] = tuple(bytes.fromhex(x) for x in item)
        elif isinstance(item, list):
            fields[name] = tuple(item)
        else:
            fields[name] = item
    return _PAYLOAD_TYPES[kind](**fields)


def fenced(text: str, info: str) -> list[str]:
    """The bodies of the fenced blocks of ``text`` whose info string is ``info``."""
    return re.findall(rf"^```{info}\n(.*?)^```[ \t]*$", text, re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def vectors(doc: str) -> dict[str, Vector]:
    return parse_vectors(doc)


def key_of(vectors: dict[str, Vector], name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hexval(vectors[name], "seed"))


def rebuilt_entry(vectors: dict[str, Vector], name: str) -> Entry:
    """The entry ``name`` built from its logical content with storage.create_entry."""
    vector = vectors[name]
    kind = vector["kind"]
    payload = payload_from_value(kind, json.loads(vector["value"]))
    prev = None if vector["prev"] == "nil" else hexval(vector, "prev")
    return create_entry(
        key_of(vectors, vector["author"]),
        seq=int(vector["seq"]),
        prev=prev,
        timestamp=int(vector["timestamp"]),
        payload=payload,
    )


def vector_entries(vectors: dict[str, Vector]) -> list[Entry]:
    return [
        decode_entry_untrusted(
            hexval(vectors[name], "header"),
            hexval(vectors[name], "signature"),
            hexval(vectors[name], "payload"),
        )
        for name in ENTRY_NAMES
    ]


# --- the document itself ----------------------------------------------------


def test_the_document_has_every_vector(vectors: dict[str, Vector]) -> None:
    expected = {
        "constants",
        "key-a",
        "key-b",
        *ENTRY_NAMES,
        *NON_CANONICAL_NAMES,
        "export",
        "key-file-encrypted",
    }
    assert set(vectors) == expected


def test_the_parser_follows_the_documented_format() -> None:
    text = "x\n```vector\nvector: v\nshort: 00ff\nlong:\n  0011\n  2233\n\nname: a b\n```\n"
    assert parse_vectors(text) == {
        "v": {"vector": "v", "short": "00ff", "long": "00112233", "name": "a b"}
    }


def test_long_hex_values_wrap_at_64_digits(doc: str) -> None:
    for body in _BLOCK.findall(doc):
        for line in body.splitlines():
            if line.startswith("  "):
                assert len(line.strip()) <= 64


def test_constants_are_the_codes(vectors: dict[str, Vector]) -> None:
    c = vectors["constants"]
    assert int(c["version"]) == VERSION
    assert hexval(c, "signature-domain") == SIGNATURE_DOMAIN == b"torv-entry-v1\x00"
    assert int(c["max-header-size"]) == MAX_HEADER_SIZE
    assert int(c["max-payload-size"]) == MAX_PAYLOAD_SIZE
    assert int(c["max-seq"]) == MAX_SEQ == 2**53 - 1
    assert int(c["max-timestamp"]) == MAX_TIMESTAMP
    assert int(c["max-depth"]) == MAX_DEPTH
    assert int(c["max-text-chars"]) == MAX_TEXT_CHARS
    assert int(c["max-cw-chars"]) == MAX_CW_CHARS
    assert int(c["max-tags"]) == MAX_TAGS
    assert int(c["max-tag-chars"]) == MAX_TAG_CHARS
    assert int(c["max-mentions"]) == MAX_MENTIONS
    assert int(c["max-emoji-chars"]) == MAX_EMOJI_CHARS
    assert int(c["max-name-chars"]) == MAX_NAME_CHARS
    assert int(c["max-bio-chars"]) == MAX_BIO_CHARS
    assert hexval(c, "export-magic") == MAGIC
    assert int(c["max-record-size"]) == MAX_RECORD_SIZE
    assert c["feed-id-prefix"] == FEED_ID_PREFIX
    assert (int(c["scrypt-n"]), int(c["scrypt-r"]), int(c["scrypt-p"])) == (
        SCRYPT_N,
        SCRYPT_R,
        SCRYPT_P,
    )


def test_constants_in_the_prose_are_the_codes(doc: str) -> None:
    assert f"at most {MAX_HEADER_SIZE} bytes (`MAX_HEADER_SIZE`)" in doc
    assert f"at most {MAX_PAYLOAD_SIZE} bytes" in doc
    assert f"`{SIGNATURE_DOMAIN.hex()}`" in doc
    assert f"1 .. {MAX_RECORD_SIZE} (MAX_RECORD_SIZE)" in doc
    assert MAGIC.hex() in doc


# --- identity ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["key-a", "key-b"])
def test_feed_id_text_form(vectors: dict[str, Vector], name: str) -> None:
    vector = vectors[name]
    public = key_of(vectors, name).public_key().public_bytes_raw()
    assert public == hexval(vector, "public")
    text = vector["feed-id"]
    assert feed_id_to_text(public) == text
    assert feed_id_from_text(text) == public
    assert len(text) == 60
    assert short_feed_id(public) == vector["short"] == "@" + text[5:13]
    # The rule of section 2.3, computed here independently of node.identity.
    checksum = hashlib.sha256(hexval(vectors["constants"], "feed-id-checksum-domain") + public)
    assert checksum.digest()[:2] == hexval(vector, "checksum")
    body = base64.b32decode(text[5:].upper() + "=")
    assert body == public + hexval(vector, "checksum")


@pytest.mark.parametrize("name", ["key-a", "key-b"])
def test_feed_id_text_with_padding_bits_is_refused(vectors: dict[str, Vector], name: str) -> None:
    text, bad = vectors[name]["feed-id"], vectors[name]["padding-set"]
    assert bad[:-1] == text[:-1]
    assert bad[-1] != text[-1]
    with pytest.raises(InvalidArgument):
        feed_id_from_text(bad)


# --- entries ----------------------------------------------------------------


@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_entry_is_rebuilt_byte_for_byte(vectors: dict[str, Vector], name: str) -> None:
    vector = vectors[name]
    built = rebuilt_entry(vectors, name)
    assert built.payload == hexval(vector, "payload")
    assert built.header.payload_hash == hexval(vector, "payload-hash")
    assert built.header.payload_size == int(vector["payload-size"])
    assert built.header.kind == vector["kind"]
    assert built.header_bytes == hexval(vector, "header")
    assert built.signature == hexval(vector, "signature")
    assert built.id == hexval(vector, "id")


@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_entry_decodes_with_and_without_its_payload(vectors: dict[str, Vector], name: str) -> None:
    vector = vectors[name]
    header, signature = hexval(vector, "header"), hexval(vector, "signature")
    full = decode_entry_untrusted(header, signature, hexval(vector, "payload"))
    expected = payload_from_value(vector["kind"], json.loads(vector["value"]))
    assert full.content == expected
    assert full.id == hexval(vector, "id")
    assert full.author == hexval(vectors[vector["author"]], "public")
    bare = decode_entry_untrusted(header, signature, None)
    assert bare.id == full.id
    assert bare.content is None


@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_signature_and_id_follow_the_documented_rule(
    vectors: dict[str, Vector], name: str
) -> None:
    vector = vectors[name]
    header, signature = hexval(vector, "header"), hexval(vector, "signature")
    domain = hexval(vectors["constants"], "signature-domain")
    key = key_of(vectors, vector["author"])
    assert key.sign(domain + header) == signature
    key.public_key().verify(signature, domain + header)
    assert hashlib.sha256(header + signature).digest() == hexval(vector, "id")
    payload = hexval(vector, "payload")
    assert hashlib.sha256(payload).digest() == hexval(vector, "payload-hash")
    assert len(payload) == int(vector["payload-size"])


def test_entries_form_one_chain(vectors: dict[str, Vector]) -> None:
    prev = "nil"
    for seq, name in enumerate(ENTRY_NAMES, start=1):
        assert int(vectors[name]["seq"]) == seq
        assert vectors[name]["prev"] == prev
        prev = vectors[name]["id"]


def test_entries_say_what_section_7_says(vectors: dict[str, Vector]) -> None:
    contents = [e.content for e in vector_entries(vectors)]
    ids = [hexval(vectors[name], "id") for name in ENTRY_NAMES]
    key_a = hexval(vectors["key-a"], "public")
    key_b = hexval(vectors["key-b"], "public")
    profile, post, follow, reply, react, delete = contents
    assert isinstance(profile, Profile)
    assert profile.name
    assert profile.bio
    assert "\n" in profile.bio
    assert isinstance(post, Post)
    assert not post.text.isascii()
    assert post.tags
    assert post.cw
    assert follow == Follow(feed=key_b)
    assert isinstance(reply, Post)
    assert reply.root == reply.parent == ids[1]
    assert reply.mentions == (key_b,)
    assert isinstance(react, React)
    assert (react.entry, react.author) == (ids[1], key_a)
    assert delete == Delete(entry=ids[3])


def test_payload_encoding_is_the_codes(vectors: dict[str, Vector]) -> None:
    for name in ENTRY_NAMES:
        vector = vectors[name]
        payload = payload_from_value(vector["kind"], json.loads(vector["value"]))
        assert encode_payload(payload) == hexval(vector, "payload")


# --- non-canonical entries --------------------------------------------------


@pytest.mark.parametrize("name", NON_CANONICAL_NAMES)
def test_non_canonical_entry_is_rejected(vectors: dict[str, Vector], name: str) -> None:
    vector = vectors[name]
    header, signature = hexval(vector, "header"), hexval(vector, "signature")
    payload = hexval(vector, "payload")
    # It is correctly signed and hashed: only the encoding is wrong.
    domain = hexval(vectors["constants"], "signature-domain")
    key_of(vectors, "key-a").public_key().verify(signature, domain + header)
    assert hashlib.sha256(header + signature).digest() == hexval(vector, "id")
    base = vectors[vector["based-on"]]
    same_value = msgpack.unpackb(payload, raw=False) == msgpack.unpackb(
        hexval(base, "payload"), raw=False
    )
    assert same_value
    with pytest.raises(MalformedEntry) as caught:
        decode_entry_untrusted(header, signature, payload)
    assert caught.value.problem == vector["problem"] == "non-canonical"


def test_non_canonical_payloads_are_rejected_alone(vectors: dict[str, Vector]) -> None:
    for name in ("non-canonical-unsorted-keys", "non-canonical-long-string"):
        with pytest.raises(MalformedEntry) as caught:
            decode_payload_untrusted("post", hexval(vectors[name], "payload"))
        assert caught.value.problem == "non-canonical"


# --- the export file --------------------------------------------------------


def exported_entries(vectors: dict[str, Vector]) -> list[Entry]:
    export = vectors["export"]
    assert export["entries"].split() == ENTRY_NAMES
    bare = set(export["no-payload"].split())
    return [
        e.without_payload() if name in bare else e
        for name, e in zip(ENTRY_NAMES, vector_entries(vectors), strict=True)
    ]


def test_export_file_reads_back(vectors: dict[str, Vector]) -> None:
    data = hexval(vectors["export"], "file")
    entries = list(read_export_untrusted(io.BytesIO(data)))
    assert entries == exported_entries(vectors)
    assert entries[3].payload is None
    out = io.BytesIO()
    assert write_export(out, entries) == len(ENTRY_NAMES)
    assert out.getvalue() == data


def test_export_file_follows_the_documented_layout(vectors: dict[str, Vector]) -> None:
    data = hexval(vectors["export"], "file")
    magic = hexval(vectors["constants"], "export-magic")
    assert data.startswith(magic)
    at, records = len(magic), []
    while (length := int.from_bytes(data[at : at + 4], "big")) != 0:
        records.append(msgpack.unpackb(data[at + 4 : at + 4 + length], raw=False))
        at += 4 + length
    count = int.from_bytes(data[at + 4 : at + 12], "big")
    assert count == len(records) == len(ENTRY_NAMES)
    assert data[at + 12 :] == hashlib.sha256(data[: at + 12]).digest()
    for record, e in zip(records, exported_entries(vectors), strict=True):
        assert record == [e.header_bytes, e.signature, e.payload]


def test_export_file_is_what_a_store_exports(vectors: dict[str, Vector], tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db", workers=1) as store:
        report = store.ingest(vector_entries(vectors), atomic=True)
        assert report.stored == len(ENTRY_NAMES)
        author = hexval(vectors["key-a"], "public")
        out = io.BytesIO()
        write_export(out, (stored.entry for stored in store.log(author)))
    assert out.getvalue() == hexval(vectors["export"], "file")


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="digest"),
        pytest.param(lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], id="record"),
        pytest.param(lambda b: b[:-40], id="truncated"),
        pytest.param(lambda b: b + b"\x00", id="trailing"),
    ],
)
def test_damaged_export_file_is_refused(
    vectors: dict[str, Vector], damage: Callable[[bytes], bytes]
) -> None:
    data = damage(hexval(vectors["export"], "file"))
    with pytest.raises(BadExportFile):
        list(read_export_untrusted(io.BytesIO(data)))


# --- key file and config ----------------------------------------------------


def test_encrypted_key_file_vector(vectors: dict[str, Vector]) -> None:
    vector = vectors["key-file-encrypted"]
    key = key_of(vectors, vector["author"])
    derived = Scrypt(
        salt=hexval(vector, "salt"),
        length=32,
        n=int(vector["scrypt-n"]),
        r=int(vector["scrypt-r"]),
        p=int(vector["scrypt-p"]),
    ).derive(vector["passphrase"].encode("utf-8"))
    assert derived == hexval(vector, "derived-key")
    secret = ChaCha20Poly1305(derived).encrypt(
        hexval(vector, "nonce"), key.private_bytes_raw(), key.public_key().public_bytes_raw()
    )
    assert secret == hexval(vector, "secret")


def write_private(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def test_key_file_examples_load(vectors: dict[str, Vector], doc: str, tmp_path: Path) -> None:
    plain, encrypted = fenced(doc, "json")
    seed = hexval(vectors["key-a"], "seed")
    loaded = KeyFile.load(write_private(tmp_path / "plain.key", plain))
    assert not loaded.encrypted
    assert loaded.unlock().private_bytes_raw() == seed
    loaded = KeyFile.load(write_private(tmp_path / "encrypted.key", encrypted))
    assert loaded.encrypted
    passphrase = vectors["key-file-encrypted"]["passphrase"]
    assert loaded.unlock(passphrase).private_bytes_raw() == seed
    fields = json.loads(encrypted)
    # Laid out as torv writes it: the keys in this order, 2-space indentation.
    assert json.dumps(fields, indent=2) + "\n" == encrypted
    assert list(fields) == ["torv-secret-key", "public", "encryption", "scrypt", "nonce", "secret"]
    assert fields["secret"] == vectors["key-file-encrypted"]["secret"]
    assert fields["nonce"] == vectors["key-file-encrypted"]["nonce"]
    assert fields["scrypt"]["salt"] == vectors["key-file-encrypted"]["salt"]


def test_unencrypted_key_file_example_is_what_torv_writes(
    vectors: dict[str, Vector], doc: str, tmp_path: Path
) -> None:
    plain = fenced(doc, "json")[0]
    path = tmp_path / "secret.key"
    KeyFile.create(path, key_of(vectors, "key-a"))
    assert path.read_text(encoding="utf-8") == plain


def test_config_example_parses(vectors: dict[str, Vector], doc: str) -> None:
    (example,) = fenced(doc, "toml")
    config = Config.parse(example)
    assert config.timeline_limit == 50
    assert config.petnames == {hexval(vectors["key-a"], "public"): "ada"}
