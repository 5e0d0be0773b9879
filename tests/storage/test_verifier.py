"""Signature checks in threads and helper processes (storage/verifier.py,
storage/_verify_worker.py)."""

from __future__ import annotations

import dataclasses
import io
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from storage import _verify_worker, verifier
from storage._verify_worker import BadRequest, check_records, encode_records, serve
from storage.entry import SIGNATURE_DOMAIN, Entry
from storage.errors import BadSignature
from storage.store import Store
from storage.verifier import PROCESS_BATCH, Verifier

from .helpers import make_key, posts, public, sign, with_signature

ALICE, BOB, CAROL = make_key(1), make_key(2), make_key(3)


def _records(entries: list[Entry]) -> bytes:
    return encode_records([(e.header.author, e.signature, e.header_bytes) for e in entries])


def _forge(entry: Entry) -> Entry:
    """``entry`` signed by someone else than its author."""
    return with_signature(entry, sign(CAROL, entry.header_bytes))


@pytest.fixture
def verifier_() -> Iterator[Verifier]:
    checks = Verifier(2)
    yield checks
    checks.close()


# --- the helper's requests ------------------------------------------------------


def test_check_records_says_which_signatures_verify() -> None:
    log = posts(ALICE, 4)
    log[2] = _forge(log[2])
    assert check_records(_records(log), SIGNATURE_DOMAIN) == b"\x01\x01\x00\x01"


def test_check_records_refuses_a_signature_made_for_another_domain() -> None:
    [entry] = posts(ALICE, 1)
    assert check_records(_records([entry]), b"another-domain\x00") == b"\x00"


def test_check_records_answers_a_key_that_is_not_a_point_with_0() -> None:
    [entry] = posts(ALICE, 1)
    body = encode_records([(b"\xff" * 32, entry.signature, entry.header_bytes)])
    assert check_records(body, SIGNATURE_DOMAIN) == b"\x00"


@pytest.mark.parametrize("cut", [1, 50, 97, 99])
def test_check_records_refuses_a_record_cut_short(cut: int) -> None:
    body = _records(posts(ALICE, 1))
    with pytest.raises(BadRequest):
        check_records(body[:cut], SIGNATURE_DOMAIN)


def test_encode_records_refuses_fields_of_the_wrong_size() -> None:
    with pytest.raises(BadRequest):
        encode_records([(b"short", b"s" * 64, b"h")])


def _request(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_serve_answers_each_request_in_turn_until_the_input_ends() -> None:
    log = posts(ALICE, 3)
    requests = io.BytesIO(_request(_records(log[:2])) + _request(_records([_forge(log[2])])))
    answers = io.BytesIO()
    serve(requests, answers, SIGNATURE_DOMAIN)
    assert answers.getvalue() == b"\x00\x00\x00\x02\x01\x01" + b"\x00\x00\x00\x01\x00"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00",  # a length cut short
        b"\x00\x00\x00\x10abc",  # a body cut short
        _request(b"x" * 20),  # a record that does not parse
        struct.pack(">I", _verify_worker.MAX_REQUEST + 1),  # too large
    ],
)
def test_serve_stops_at_a_request_that_does_not_parse(garbage: bytes) -> None:
    good = _request(_records(posts(ALICE, 1)))
    answers = io.BytesIO()
    serve(
        io.BytesIO(good + garbage + (b"" if len(garbage) < 4 else good)), answers, SIGNATURE_DOMAIN
    )
    assert answers.getvalue() == b"\x00\x00\x00\x01\x01"


# --- the verifier ---------------------------------------------------------------


def test_a_large_batch_is_checked_by_helper_processes(verifier_: Verifier) -> None:
    log = posts(ALICE, 2 * PROCESS_BATCH)
    forged = {3, PROCESS_BATCH + 7}
    for index in forged:
        log[index] = _forge(log[index])
    results = verifier_.check(log)
    assert verifier_.helpers == 2
    assert {index for index, result in enumerate(results) if result is not None} == forged
    assert all(isinstance(results[index], BadSignature) for index in forged)


def test_a_small_batch_is_checked_without_a_helper(verifier_: Verifier) -> None:
    log = posts(ALICE, PROCESS_BATCH)  # two shares, each under PROCESS_BATCH
    log[5] = _forge(log[5])
    results = verifier_.check(log)
    assert verifier_.helpers == 0
    assert [index for index, result in enumerate(results) if result is not None] == [5]


def test_close_ends_the_helpers(verifier_: Verifier) -> None:
    verifier_.check(posts(ALICE, 2 * PROCESS_BATCH))
    processes = [helper._process for helper in verifier_._helpers.values()]
    assert len(processes) == 2
    verifier_.close()
    assert all(process.poll() is not None for process in processes)
    assert verifier_.helpers == 0


def test_a_helper_that_dies_is_replaced_and_its_batch_checked_here(verifier_: Verifier) -> None:
    log = posts(ALICE, 2 * PROCESS_BATCH)
    log[1] = _forge(log[1])
    verifier_.check(log)
    for helper in verifier_._helpers.values():
        helper._process.kill()
        helper._process.wait()
    results = verifier_.check(log)
    assert [index for index, result in enumerate(results) if result is not None] == [1]
    # The next batch starts new helpers.
    again = verifier_.check(log)
    assert [index for index, result in enumerate(again) if result is not None] == [1]
    assert verifier_.helpers == 2


def test_when_helpers_cannot_run_every_batch_is_checked_in_threads(
    verifier_: Verifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken_worker.py"
    broken.write_text("import sys\nsys.exit(3)\n")
    monkeypatch.setattr(verifier, "_WORKER", str(broken))
    log = posts(ALICE, 2 * PROCESS_BATCH)
    log[9] = _forge(log[9])
    for _ in range(3):
        results = verifier_.check(log)
        assert [index for index, result in enumerate(results) if result is not None] == [9]
    assert verifier_.helpers == 0
    assert not verifier_._processes  # gave up after three failures


def test_without_an_interpreter_to_start_helpers_batches_are_checked_in_threads(
    verifier_: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "")  # embedded Python: nothing to run
    log = posts(ALICE, 2 * PROCESS_BATCH)
    log[4] = _forge(log[4])
    results = verifier_.check(log)
    assert [index for index, result in enumerate(results) if result is not None] == [4]
    assert verifier_.helpers == 0


def test_an_entry_the_helper_protocol_cannot_carry_is_checked_in_the_thread(
    verifier_: Verifier,
) -> None:
    log = posts(ALICE, 2 * PROCESS_BATCH)
    # Parsing never makes such an entry; a short author key cannot verify.
    log[0] = dataclasses.replace(log[0], header=dataclasses.replace(log[0].header, author=b"k"))
    results = verifier_.check(log)
    assert isinstance(results[0], BadSignature)
    assert results[1:] == [None] * (len(log) - 1)


def test_a_verifier_without_processes_starts_no_helper() -> None:
    checks = Verifier(2, processes=False)
    try:
        results = checks.check(posts(ALICE, 2 * PROCESS_BATCH))
        assert results == [None] * (2 * PROCESS_BATCH)
        assert checks.helpers == 0
    finally:
        checks.close()


def test_the_helper_runs_as_a_script_importing_no_torv_module() -> None:
    log = posts(ALICE, 2)
    log[0] = _forge(log[0])
    done = subprocess.run(
        [sys.executable, "-X", "importtime", verifier._WORKER, SIGNATURE_DOMAIN.hex()],
        input=_request(_records(log)),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == b"\x00\x00\x00\x02\x00\x01"
    imported = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()}
    assert "cryptography" in imported
    assert not {name for name in imported if name.split(".")[0] in {"storage", "node", "gossip"}}


def test_the_helper_without_its_domain_exits_with_a_usage_message() -> None:
    done = subprocess.run(
        [sys.executable, verifier._WORKER], capture_output=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert b"usage" in done.stderr


# --- the store's two steps ------------------------------------------------------


def test_check_then_ingest_checked_stores_as_ingest_does(tmp_path: Path) -> None:
    alice, bob = posts(ALICE, 600), posts(BOB, 3)
    bob[1] = _forge(bob[1])
    entries = [*alice, *bob]
    with Store.open(tmp_path / "a.db") as one, Store.open(tmp_path / "b.db") as two:
        expected = one.ingest(entries, chunk_size=256)
        checked = two.check(entries, chunk_size=256)
        assert len(checked) == len(entries)
        report = two.ingest_checked(checked)
        counts = (report.stored, report.duplicates, report.forks, report.stored_indices)
        assert counts == (
            expected.stored,
            expected.duplicates,
            expected.forks,
            expected.stored_indices,
        )
        rejected = [(index, error.problem) for index, error in report.rejected]
        assert rejected == [(index, error.problem) for index, error in expected.rejected]
        assert rejected == [(601, "bad-signature"), (602, "gap")]
        assert two.latest_seq(public(ALICE)) == 600
        assert two.latest_seq(public(BOB)) == 1
        two.verify_all()


def test_ingest_checked_writes_every_chunk_in_one_transaction(tmp_path: Path) -> None:
    entries = posts(ALICE, 300)
    with Store.open(tmp_path / "a.db") as store:
        checked = store.check(entries, chunk_size=100)
        failing: Future[list[BadSignature | None]] = Future()
        failing.set_exception(RuntimeError("a verify thread broke"))
        offset, chunk, _ = checked.chunks[2]
        broken = dataclasses.replace(
            checked, chunks=(*checked.chunks[:2], (offset, chunk, [failing]))
        )
        with pytest.raises(RuntimeError):
            store.ingest_checked(broken)
        # The chunks written before the failure were rolled back with it.
        assert store.latest_seq(public(ALICE)) == 0
        assert store.ingest_checked(store.check(entries, chunk_size=100)).stored == 300
