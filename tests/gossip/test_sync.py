"""Feed sync: the planner, the gap buffer and the serving side, alone and in pairs.

Synthetic entries (a real canonical header, fake signature) serve where only
seqs count; real signed entries and two SQLite stores check that a synced
log is the source's log, forks included.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gossip.sync import (
    MENTIONED_FEEDS,
    MOVING_HEAD_ROUNDS,
    PREVIEW_SIZE,
    BatchOutcome,
    Fault,
    FeedProgress,
    GapBuffer,
    SyncPlanner,
    SyncProblem,
    answer,
    replication_scope,
)
from gossip.wire import (
    MAX_RANGE,
    MAX_WIRE_MESSAGE,
    EntryBatch,
    Heads,
    RawEntry,
    Want,
    WireMessage,
    decode_message_untrusted,
    encode_message,
)
from storage import canonical
from storage.entry import MAX_HEADER_SIZE, Entry, create_entry, parse_entry_untrusted
from storage.errors import InvalidArgument
from storage.payloads import MAX_PAYLOAD_SIZE, Post
from storage.store import Store, StoredEntry

FEEDS = [hashlib.sha256(b"sync-test-feed-%d" % n).digest() for n in range(6)]
A, B, C, D, E, F = FEEDS
TIMEOUT = 5.0


# --- builders -------------------------------------------------------------------


def synthetic(feed: bytes, seq: int, *, variant: int = 0, payload_size: int = 24) -> RawEntry:
    """An entry of ``feed`` at ``seq`` whose header reads right; never signed."""
    payload = bytes([variant % 256]) * payload_size
    header = canonical.packb(
        [
            1,
            feed,
            seq,
            None if seq == 1 else hashlib.sha256(b"%d" % (seq - 1)).digest(),
            1_000 + seq + variant,
            "post",
            hashlib.sha256(payload).digest(),
            len(payload),
        ]
    )
    return RawEntry(header, bytes(64), payload)


@cache
def synthetic_log(feed: bytes, length: int) -> tuple[RawEntry, ...]:
    return tuple(synthetic(feed, seq) for seq in range(1, length + 1))


def seq_of(raw: RawEntry) -> int:
    seq = canonical.unpack_untrusted(raw.header, max_size=MAX_HEADER_SIZE, what="header")[2]
    assert isinstance(seq, int)
    return seq


Message = TypeVar("Message", bound=WireMessage)


def over_wire(message: Message) -> Message:
    """The message as the peer decodes it: proves that it would be accepted."""
    decoded = decode_message_untrusted(encode_message(message)[4:])
    assert isinstance(decoded, type(message))
    return decoded


def serve(log: Sequence[RawEntry], want: Want, **bounds: int) -> EntryBatch:
    return over_wire(answer(want, log[want.first - 1 : want.last], **bounds))


def planner_with(
    offers: dict[bytes, int],
    have: dict[bytes, int] | None = None,
    *,
    urgent: Sequence[bytes] = (),
    window: int = 4,
    range_size: int = MAX_RANGE,
    timeout: float = 30.0,
) -> SyncPlanner:
    """A planner for the feeds in ``offers``, which the peer offers that far."""
    planner = SyncPlanner(
        list(offers),
        have or {},
        urgent=urgent,
        window=window,
        range_size=range_size,
        timeout=timeout,
    )
    planner.on_heads(Heads(tuple(offers.items())))
    return planner


def kinds(problems: Iterable[SyncProblem]) -> list[Fault]:
    return [problem.fault for problem in problems]


# --- hello and heads --------------------------------------------------------------


def test_hello_lists_every_feed_in_scope_sorted_and_chunked() -> None:
    many = [hashlib.sha256(b"many-%d" % n).digest() for n in range(2050)]
    heads = {feed: n + 1 for n, feed in enumerate(many)}
    planner = SyncPlanner([*many, A], {**heads, B: 7})  # B is not in scope, A is not held
    messages = planner.hello()
    assert [len(message.heads) for message in messages] == [2048, 3]
    pairs = [pair for message in messages for pair in message.heads]
    assert pairs == sorted({**heads, A: 0}.items())
    for message in messages:
        assert over_wire(message) == message


def test_hello_always_says_something() -> None:
    assert SyncPlanner([A], {}).hello() == [Heads(((A, 0),))]
    assert SyncPlanner([], {}).hello() == [Heads(())]


def test_offers_outside_the_scope_are_ignored() -> None:
    planner = SyncPlanner([A], {A: 3})
    planner.on_heads(Heads(((B, 100), (A, 5))))
    assert [(w.feed, w.first, w.last) for w in planner.next_requests(0.0)] == [(A, 4, 5)]
    assert set(planner.progress()) == {A}


def test_an_offer_at_or_below_the_head_asks_nothing() -> None:
    planner = planner_with({A: 5, B: 2}, {A: 5, B: 9})
    assert planner.next_requests(0.0) == []
    assert planner.idle


def test_a_head_is_told_once_it_stood_a_round_to_a_peer_that_replicates_the_feed() -> None:
    planner = SyncPlanner([A, B], {A: 2, B: 2})
    planner.hello()
    planner.on_heads(Heads(((A, 2),)))  # the peer replicates A, not B
    assert planner.announce() == []
    planner.on_local_head(A, 5)
    planner.on_local_head(B, 5)
    assert planner.announce_progress() == []  # gossip may still be bringing it
    planner.on_local_head(A, 6)
    assert planner.announce_progress() == []  # still moving: gossip carries it
    assert planner.announce_progress() == [Heads(((A, 6),))]  # stood a round
    assert planner.announce_progress() == []  # told once
    planner.on_local_head(A, 7)
    planner.on_heads(Heads(((A, 9),)))
    assert planner.announce() == []
    planner.announce_progress()
    assert planner.announce_progress() == []  # the peer holds more


def test_a_head_that_keeps_moving_is_told_every_so_many_rounds() -> None:
    planner = SyncPlanner([A], {A: 0})
    planner.hello()
    planner.on_heads(Heads(((A, 0),)))
    told: list[int] = []
    for round_ in range(1, 3 * MOVING_HEAD_ROUNDS + 1):
        planner.on_local_head(A, round_)
        for message in planner.announce_progress():
            told.append(round_)
            assert message == Heads(((A, round_ - 1),))  # as of the round before
    assert told == [MOVING_HEAD_ROUNDS, 2 * MOVING_HEAD_ROUNDS, 3 * MOVING_HEAD_ROUNDS]


def test_heads_from_a_peer_behind_are_answered_even_if_told_before() -> None:
    planner = SyncPlanner([A], {A: 4})
    planner.hello()
    planner.on_heads(Heads(((A, 1),)))
    assert planner.announce() == [Heads(((A, 4),))]
    planner.on_heads(Heads(((A, 4),)))
    assert planner.announce() == []


def test_a_feed_joining_the_scope_is_told_once() -> None:
    planner = SyncPlanner([A], {A: 1})
    planner.hello()
    planner.set_scope([A, C], {A: 1, C: 2})
    assert planner.announce() == [Heads(((C, 2),))]
    assert planner.announce() == []


def test_a_feed_the_peer_listed_before_it_joined_the_scope_is_fetched_and_told() -> None:
    planner = SyncPlanner([A], {A: 1})
    planner.hello()
    planner.on_heads(Heads(((A, 1), (C, 4))))  # C is not in the scope yet
    planner.set_scope([A, C], {C: 1})
    assert [(w.feed, w.first, w.last) for w in planner.next_requests(0.0)] == [(C, 2, 4)]
    assert planner.announce() == [Heads(((C, 1),))]
    planner.on_local_head(C, 6)
    planner.announce_progress()
    assert planner.announce_progress() == [Heads(((C, 6),))]


def test_feeds_mentioned_outside_the_scope_are_bounded() -> None:
    planner = SyncPlanner([A], {})
    many = [hashlib.sha256(b"mentioned-%d" % n).digest() for n in range(MENTIONED_FEEDS + 1)]
    for start in range(0, len(many), 2048):
        planner.on_heads(Heads(tuple((feed, 1) for feed in many[start : start + 2048])))
    planner.set_scope([A, many[0], many[-1]], {})
    assert {want.feed for want in planner.next_requests(0.0)} == {many[-1]}  # oldest forgotten


@given(
    st.dictionaries(st.sampled_from(FEEDS), st.integers(0, 50)),
    st.dictionaries(st.sampled_from(FEEDS), st.integers(0, 50)),
    st.dictionaries(st.sampled_from(FEEDS), st.integers(0, 50)),
)
def test_two_sides_telling_heads_learn_how_far_the_other_goes_and_fall_quiet(
    left_heads: dict[bytes, int], right_heads: dict[bytes, int], moves: dict[bytes, int]
) -> None:
    left, right = SyncPlanner(FEEDS, left_heads), SyncPlanner(FEEDS, right_heads)
    to_right, to_left = left.hello(), right.hello()
    for round_ in range(8):
        if round_ == 1:  # the left side gets further by other means
            for feed, seq in moves.items():
                left.on_local_head(feed, seq)
        for message in to_right:
            right.on_heads(over_wire(message))
        for message in to_left:
            left.on_heads(over_wire(message))
        to_right = left.announce() + left.announce_progress()
        to_left = right.announce() + right.announce_progress()
    assert to_right == []
    assert to_left == []
    for feed in FEEDS:
        left_has = max(left_heads.get(feed, 0), moves.get(feed, 0))
        assert right.progress()[feed].target >= left_has
        assert left.progress()[feed].target >= right_heads.get(feed, 0)


# --- flow control -----------------------------------------------------------------


def test_ranges_are_oldest_first_bounded_and_within_the_window() -> None:
    planner = planner_with({A: 1000}, {A: 10}, window=3)
    wants = planner.next_requests(0.0)
    assert [(w.first, w.last, w.newest_first) for w in wants] == [
        (11, 266, False),
        (267, 522, False),
        (523, 778, False),
    ]
    assert planner.outstanding == 3
    assert planner.next_requests(0.0) == []
    planner.on_batch(serve(synthetic_log(A, 1000), wants[1]), 1.0)
    assert [(w.first, w.last) for w in planner.next_requests(1.0)] == [(779, 1000)]


def test_feeds_take_turns_so_a_huge_feed_does_not_starve_the_rest() -> None:
    planner = planner_with({A: 100_000, B: 5, C: 5}, window=2, range_size=10)
    first = planner.next_requests(0.0)
    assert [w.feed for w in first] == [A, B]
    outcome = planner.on_batch(serve(synthetic_log(A, 100), first[0]), 1.0)
    planner.on_ingested(A, len(outcome.entries))
    assert [w.feed for w in planner.next_requests(1.0)] == [C]


def test_urgent_feeds_go_first() -> None:
    planner = planner_with({A: 5, B: 5, C: 5}, urgent=[C], window=1)
    assert [w.feed for w in planner.next_requests(0.0)] == [C]
    planner.set_urgent([B])
    planner.on_batch(serve(synthetic_log(C, 5), Want(0, C, 1, 5, False)), 1.0)
    assert [w.feed for w in planner.next_requests(1.0)] == [B]


def test_an_urgent_long_feed_gets_its_newest_page_first() -> None:
    log = synthetic_log(A, 1000)
    planner = planner_with({A: 1000}, {A: 10}, urgent=[A], window=2)
    preview, backfill = planner.next_requests(0.0)
    assert (preview.first, preview.last, preview.newest_first) == (951, 1000, True)
    assert (backfill.first, backfill.last, backfill.newest_first) == (11, 266, False)
    outcome = planner.on_batch(serve(log, preview), 1.0)
    assert outcome.entries == ()
    assert [seq for seq, _ in outcome.preview] == list(range(1000, 950, -1))
    assert [raw for _, raw in outcome.preview] == list(reversed(log[950:1000]))
    # Only one preview; the backfill goes on oldest first, over the whole range.
    later = planner.next_requests(1.0)
    assert [(w.first, w.newest_first) for w in later] == [(267, False)]


def test_no_preview_for_a_short_gap_or_a_feed_nobody_waits_for() -> None:
    planner = planner_with({A: 10 + PREVIEW_SIZE, B: 5000}, {A: 10}, urgent=[A])
    assert not any(w.newest_first for w in planner.next_requests(0.0))


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 0},
        {"range_size": 0},
        {"range_size": MAX_RANGE + 1},
        {"timeout": 0.0},
        {"preview": -1},
        {"preview": MAX_RANGE + 1},
    ],
)
def test_parameters_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        SyncPlanner([A], {}, **bad)


# --- batches ----------------------------------------------------------------------


def test_a_full_batch_is_handed_out_and_the_plan_follows_the_store() -> None:
    log = synthetic_log(A, 300)
    planner = planner_with({A: 300}, window=1)
    (want,) = planner.next_requests(0.0)
    outcome = planner.on_batch(serve(log, want), 1.0)
    assert outcome == BatchOutcome(A, log[:256])
    assert planner.progress()[A].have == 0
    assert planner.on_ingested(A, 256) == []
    assert planner.progress()[A] == FeedProgress(256, 300, abandoned=False)
    (want,) = planner.next_requests(1.0)
    assert (want.first, want.last) == (257, 300)


def test_a_batch_that_comes_early_waits_for_the_one_before_it() -> None:
    log = synthetic_log(A, 30)
    planner = planner_with({A: 30}, range_size=10)
    first, second, third = planner.next_requests(0.0)
    assert planner.on_batch(serve(log, third), 1.0).entries == ()
    assert planner.on_batch(serve(log, second), 1.0).entries == ()
    outcome = planner.on_batch(serve(log, first), 1.0)
    assert outcome.entries == log
    assert planner.on_ingested(A, 30) == []
    assert planner.idle


def test_a_cut_batch_has_its_rest_asked_before_anything_new() -> None:
    log = synthetic_log(A, 40)
    planner = planner_with({A: 40}, window=1, range_size=20)
    (want,) = planner.next_requests(0.0)
    outcome = planner.on_batch(serve(log, want, max_entries=7), 1.0)
    assert outcome.entries == log[:7]
    planner.on_ingested(A, 7)
    (rest,) = planner.next_requests(1.0)
    assert (rest.first, rest.last) == (8, 20)


def test_a_fork_travels_with_its_seq() -> None:
    log = synthetic_log(A, 5)
    fork = synthetic(A, 3, variant=1)
    served = [*log[:3], fork, *log[3:]]
    planner = planner_with({A: 5}, window=1)
    (want,) = planner.next_requests(0.0)
    outcome = planner.on_batch(over_wire(answer(want, served)), 1.0)
    assert outcome == BatchOutcome(A, tuple(served))


def test_answers_arriving_after_the_store_moved_on_hand_out_only_what_is_new() -> None:
    log = synthetic_log(A, 20)
    planner = planner_with({A: 20}, window=1)
    (want,) = planner.next_requests(0.0)
    planner.on_local_head(A, 12)  # gossip, or another peer's sync, was faster
    assert planner.on_batch(serve(log, want), 1.0).entries == log[12:]


def test_the_plan_skips_what_another_source_brought() -> None:
    planner = planner_with({A: 1000, B: 1}, window=1)
    assert planner.next_requests(0.0)[0].feed == A
    planner.on_local_head(A, 900)
    planner.on_batch(serve(synthetic_log(A, 1000), Want(0, A, 1, 256, False)), 1.0)
    wants = planner.next_requests(1.0)
    assert [(w.feed, w.first) for w in wants] == [(B, 1)]
    planner.on_batch(serve(synthetic_log(B, 1), wants[0]), 1.0)
    planner.on_ingested(B, 1)
    assert [(w.feed, w.first, w.last) for w in planner.next_requests(1.0)] == [(A, 901, 1000)]


# --- what a peer may get wrong ----------------------------------------------------------


def test_an_answer_to_a_request_never_sent() -> None:
    planner = planner_with({A: 5})
    outcome = planner.on_batch(EntryBatch(77, (), True), 0.0)
    assert kinds(outcome.problems) == [Fault.UNKNOWN_REQUEST]


def test_a_second_answer_to_one_request() -> None:
    log = synthetic_log(A, 5)
    planner = planner_with({A: 5})
    (want,) = planner.next_requests(0.0)
    batch = serve(log, want)
    assert planner.on_batch(batch, 1.0).problems == ()
    assert kinds(planner.on_batch(batch, 1.0).problems) == [Fault.UNEXPECTED_BATCH]


@pytest.mark.parametrize(
    ("entries", "fault", "handed_out"),
    [
        # a batch larger than asked: 1..5 asked, 1..7 sent
        ([synthetic(A, seq) for seq in range(1, 8)], Fault.OUT_OF_RANGE, 5),
        ([synthetic(A, 1), synthetic(B, 2)], Fault.WRONG_FEED, 1),
        ([synthetic(A, 1), RawEntry(b"\xc1", bytes(64), None)], Fault.MALFORMED_ENTRY, 1),
        ([synthetic(A, 1), synthetic(A, 3)], Fault.OUT_OF_ORDER, 1),
        ([synthetic(A, 2), synthetic(A, 3)], Fault.OUT_OF_ORDER, 0),
        ([synthetic(A, 1), synthetic(A, 1)], Fault.OUT_OF_ORDER, 1),
        ([synthetic(A, 1), synthetic(A, 2)], Fault.SHORT_BATCH, 2),
        ([], Fault.SHORT_BATCH, 0),
    ],
)
def test_a_broken_batch_hands_out_its_good_prefix_and_ends_the_feed(
    entries: list[RawEntry], fault: Fault, handed_out: int
) -> None:
    planner = planner_with({A: 5, B: 3}, window=1)
    (want,) = planner.next_requests(0.0)
    assert (want.feed, want.first, want.last) == (A, 1, 5)
    outcome = planner.on_batch(EntryBatch(want.request, tuple(entries), True), 1.0)
    assert kinds(outcome.problems) == [fault]
    assert outcome.entries == tuple(entries[:handed_out])
    assert planner.progress()[A].abandoned
    # The feed is over with this peer; the others go on.
    assert [w.feed for w in planner.next_requests(1.0)] == [B]


def test_no_entries_and_not_done_is_no_progress() -> None:
    planner = planner_with({A: 5})
    (want,) = planner.next_requests(0.0)
    outcome = planner.on_batch(EntryBatch(want.request, (), False), 1.0)
    assert kinds(outcome.problems) == [Fault.NO_PROGRESS]
    assert planner.next_requests(1.0) == []


def test_answers_to_requests_of_an_abandoned_feed_are_ignored() -> None:
    log = synthetic_log(A, 600)
    planner = planner_with({A: 600})
    first, second, third = planner.next_requests(0.0)
    planner.on_batch(EntryBatch(first.request, (), True), 1.0)
    assert planner.outstanding == 2  # the peer still works on them
    assert planner.on_batch(serve(log, second), 1.0) == BatchOutcome()
    assert planner.on_batch(serve(log, third), 1.0) == BatchOutcome()
    assert planner.idle


def test_entries_the_store_refused_end_the_feed() -> None:
    log = synthetic_log(A, 600)
    planner = planner_with({A: 600})
    first, *_ = planner.next_requests(0.0)
    planner.on_batch(serve(log, first), 1.0)
    problems = planner.on_ingested(A, 100)  # seq 101 had a bad signature
    assert kinds(problems) == [Fault.REJECTED]
    assert planner.progress()[A].abandoned
    assert planner.next_requests(1.0) == []


@pytest.mark.parametrize(("elsewhere", "asked_again"), [(10, None), (7, (8, 10))])
def test_an_answer_parked_behind_a_range_the_store_got_elsewhere_is_not_left_behind(
    elsewhere: int, asked_again: tuple[int, int] | None
) -> None:
    log = synthetic_log(A, 10)
    planner = planner_with({A: 10}, range_size=5)
    first, second = planner.next_requests(0.0)
    assert planner.on_batch(serve(log, second), 1.0) == BatchOutcome(A)  # parked
    # Cut short: 4..5 are to be asked again, and 6..10 wait behind them.
    assert planner.on_batch(serve(log, first, max_entries=3), 1.0).entries == log[:3]
    assert planner.on_ingested(A, 3) == []
    planner.on_local_head(A, elsewhere)  # gossip, or another peer, brought more
    assert planner.parked == 0
    wants = planner.next_requests(2.0)
    assert [(want.first, want.last) for want in wants] == ([asked_again] if asked_again else [])
    if asked_again is None:
        assert planner.idle


def test_a_refusal_is_blamed_once_when_later_outcomes_were_handed_out_already() -> None:
    log = synthetic_log(A, 600)
    planner = planner_with({A: 600})
    first, second, *_ = planner.next_requests(0.0)
    # A driver that ingests in rounds takes both before it reports either.
    assert planner.on_batch(serve(log, first), 1.0).entries == log[:256]
    assert planner.on_batch(serve(log, second), 1.0).entries == log[256:512]
    assert kinds(planner.on_ingested(A, 100)) == [Fault.REJECTED]
    assert planner.on_ingested(A, 100) == []  # the second run extends the refused entry
    assert planner.progress()[A] == FeedProgress(100, 600, abandoned=True)


def test_a_gap_hint_that_proves_optimistic_is_no_fault() -> None:
    log = synthetic_log(A, 5)
    planner = SyncPlanner([A], {})
    planner.on_gap(A, 1, 9)
    (want,) = planner.next_requests(0.0)
    assert (want.first, want.last) == (1, 9)
    outcome = planner.on_batch(serve(log, want), 1.0)
    assert outcome == BatchOutcome(A, log)
    planner.on_ingested(A, 5)
    assert planner.idle
    assert planner.progress()[A].complete


def test_an_early_end_beyond_the_offer_cancels_the_ranges_after_it() -> None:
    log = synthetic_log(A, 15)
    planner = planner_with({A: 12}, range_size=5)
    planner.on_gap(A, 1, 30)
    wants = planner.next_requests(0.0)
    assert [(w.first, w.last) for w in wants] == [(1, 5), (6, 10), (11, 15), (16, 20)]
    for want in wants[:2]:
        planner.on_batch(serve(log, want), 1.0)
    assert planner.on_batch(serve(log[:13], wants[2]), 1.0).entries == log[10:13]
    assert planner.on_batch(serve(log, wants[3]), 1.0) == BatchOutcome()  # cancelled
    assert planner.next_requests(1.0) == []
    assert planner.progress()[A].target == 13


# --- time -------------------------------------------------------------------------


def test_a_silent_request_is_sent_again_once_then_the_peer_is_unresponsive() -> None:
    log = synthetic_log(A, 5)
    planner = planner_with({A: 5})
    (want,) = planner.next_requests(0.0)
    assert planner.next_deadline() == TIMEOUT * 6  # the default timeout is 30 s
    assert planner.expire(29.0) == []
    assert planner.expire(30.0) == []
    assert planner.next_deadline() is None
    assert planner.next_requests(30.0) == [want]  # the same id again
    problems = planner.expire(60.0)
    assert kinds(problems) == [Fault.UNRESPONSIVE]
    (again,) = planner.next_requests(60.0)
    assert (again.first, again.last) == (want.first, want.last)
    assert again.request != want.request
    # A late answer to the given-up request is no fault, and no use.
    assert planner.on_batch(serve(log, want), 61.0) == BatchOutcome()
    assert planner.on_batch(serve(log, again), 61.0).entries == log


def test_on_a_slow_link_each_answer_gives_the_requests_behind_it_time() -> None:
    log = synthetic_log(A, 30)
    planner = planner_with({A: 30}, window=3, range_size=10, timeout=TIMEOUT)
    wants = planner.next_requests(0.0)
    for n, want in enumerate(wants, start=1):
        now = n * (TIMEOUT - 1)  # each answer takes almost a whole timeout
        assert planner.expire(now) == []
        assert planner.next_requests(now) == []  # nothing is due again
        assert planner.on_batch(serve(log, want), now).entries == log[10 * n - 10 : 10 * n]


def test_a_request_the_peer_skipped_gets_no_extra_time() -> None:
    log = synthetic_log(A, 30)
    planner = planner_with({A: 30}, window=3, range_size=10, timeout=TIMEOUT)
    first, second, third = planner.next_requests(0.0)
    planner.on_batch(serve(log, second), 4.0)
    planner.on_batch(serve(log, third), 4.5)
    assert planner.next_deadline() == TIMEOUT
    assert planner.expire(TIMEOUT) == []
    assert planner.next_requests(TIMEOUT) == [first]


def test_parked_answers_are_bounded() -> None:
    log = synthetic_log(A, 1000)
    planner = SyncPlanner([A, B], {}, window=2, range_size=10)
    planner.on_heads(Heads(((A, 1000),)))
    first, second = planner.next_requests(0.0)
    planner.on_batch(serve(log, second), 1.0)
    (third,) = planner.next_requests(1.0)
    planner.on_batch(serve(log, third), 1.0)
    assert planner.parked == 2
    assert planner.next_requests(1.0) == []  # only A's first range would unblock them
    planner.on_heads(Heads(((B, 5),)))
    assert [(w.feed, w.first) for w in planner.next_requests(1.0)] == [(B, 1)]
    assert planner.on_batch(serve(log, first), 2.0).entries == log[:30]
    assert planner.parked == 0
    assert [(w.feed, w.first) for w in planner.next_requests(2.0)] == [(A, 31)]


def test_a_request_due_again_is_not_sent_for_what_the_store_now_holds() -> None:
    log = synthetic_log(A, 100)
    planner = planner_with({A: 100}, window=1, range_size=50, timeout=TIMEOUT)
    (want,) = planner.next_requests(0.0)
    assert planner.expire(TIMEOUT) == []
    planner.on_local_head(A, 30)  # gossip, or another peer, brought 1..30 meanwhile
    (again,) = planner.next_requests(TIMEOUT)
    assert (again.first, again.last) == (31, 50)
    assert again.request != want.request
    assert planner.on_batch(serve(log, want), 6.0) == BatchOutcome()  # late: no fault
    assert planner.on_batch(serve(log, again), 6.0).entries == log[30:50]


def test_both_answers_to_a_request_sent_twice_are_fine() -> None:
    log = synthetic_log(A, 5)
    planner = planner_with({A: 5}, timeout=TIMEOUT)
    (want,) = planner.next_requests(0.0)
    planner.expire(TIMEOUT)
    planner.next_requests(TIMEOUT)
    assert planner.on_batch(serve(log, want), 6.0).entries == log
    assert planner.on_batch(serve(log, want), 6.0) == BatchOutcome()


def test_an_unanswered_preview_is_not_asked_again() -> None:
    planner = planner_with({A: 500}, urgent=[A], window=1, timeout=TIMEOUT)
    (preview,) = planner.next_requests(0.0)
    assert preview.newest_first
    planner.expire(TIMEOUT)
    assert planner.next_requests(TIMEOUT) == [preview]
    assert kinds(planner.expire(2 * TIMEOUT)) == [Fault.UNRESPONSIVE]
    (backfill,) = planner.next_requests(2 * TIMEOUT)
    assert not backfill.newest_first


# --- scope ------------------------------------------------------------------------


def test_a_feed_leaving_the_scope_is_dropped_and_one_joining_starts_at_its_head() -> None:
    planner = planner_with({A: 5, B: 5})
    wants = planner.next_requests(0.0)
    planner.set_scope([B, C], {C: 2})
    assert planner.scope == {B, C}
    a_want = next(w for w in wants if w.feed == A)
    assert planner.on_batch(serve(synthetic_log(A, 5), a_want), 1.0) == BatchOutcome()
    planner.on_heads(Heads(((C, 4), (A, 9))))
    assert [(w.feed, w.first, w.last) for w in planner.next_requests(1.0)] == [(C, 3, 4)]
    assert [feed for feed, _ in planner.hello()[0].heads] == sorted([B, C])


def test_replication_scope_walks_follows_by_hops_and_never_through_a_block() -> None:
    own = F
    following = {own: [A, B], A: [C, own], B: [D], D: [E]}
    assert replication_scope(own, following, hops=0) == {own}
    assert replication_scope(own, following) == {own, A, B}
    assert replication_scope(own, following, hops=2) == {own, A, B, C, D}
    assert replication_scope(own, following, hops=3, blocked=[B, C]) == {own, A}
    assert replication_scope(own, following, hops=1, blocked=[own]) == {own, A, B}
    with pytest.raises(InvalidArgument):
        replication_scope(own, following, hops=-1)


# --- the serving side ---------------------------------------------------------------


def test_answer_keeps_the_order_asked() -> None:
    log = synthetic_log(A, 10)
    assert answer(Want(1, A, 1, 10, False), log) == EntryBatch(1, log, True)
    assert answer(Want(2, A, 1, 10, True), log) == EntryBatch(2, tuple(reversed(log)), True)
    assert answer(Want(3, A, 5, 10, False), ()) == EntryBatch(3, (), True)


def test_answer_cuts_by_count() -> None:
    log = [synthetic(A, 1 + n // 2, variant=n % 2) for n in range(300)]  # forks: 2 per seq
    batch = answer(Want(1, A, 1, 150, False), log)
    assert batch.entries == tuple(log[:MAX_RANGE])
    assert not batch.done
    newest = answer(Want(1, A, 1, 150, True), log, max_entries=3)
    assert newest.entries == tuple(reversed(log[-3:]))
    assert not newest.done


def large(seq: int) -> RawEntry:
    """An entry as large as the wire lets one be (only its size matters here)."""
    return RawEntry(bytes([seq % 256]) * MAX_HEADER_SIZE, bytes(64), bytes(MAX_PAYLOAD_SIZE))


def test_answer_cuts_by_bytes_and_the_rest_follows() -> None:
    log = [large(seq) for seq in range(1, MAX_RANGE + 1)]
    want = Want(9, A, 1, MAX_RANGE, False)
    batch = answer(want, log)
    assert not batch.done
    assert 0 < len(batch.entries) < MAX_RANGE
    framed = encode_message(batch)
    assert len(framed) - 4 <= MAX_WIRE_MESSAGE
    assert len(framed) - 4 > MAX_WIRE_MESSAGE - 20_000  # not cut much too early
    sent, batches = len(batch.entries), 1
    while sent < MAX_RANGE:
        rest = answer(Want(9, A, sent + 1, MAX_RANGE, False), log[sent:])
        encode_message(rest)
        sent, batches = sent + len(rest.entries), batches + 1
        assert rest.done == (sent == MAX_RANGE)
    assert batches == 5


def test_answer_bounds_are_checked() -> None:
    want = Want(1, A, 1, 1, False)
    for bounds in ({"max_entries": 0}, {"max_entries": MAX_RANGE + 1}, {"max_bytes": 10_000}):
        with pytest.raises(InvalidArgument):
            answer(want, (), **bounds)


# --- the gap buffer -----------------------------------------------------------------


def test_held_entries_come_out_in_order_once_the_gap_is_filled() -> None:
    gap = GapBuffer()
    log = synthetic_log(A, 20)
    assert not gap.add(A, 10, log[9], 0.0, head=9)  # not ahead of a gap: ingest it
    for seq in (15, 13, 14, 18):
        assert gap.add(A, seq, log[seq - 1], 0.0, head=9)
    assert not gap.add(A, 14, synthetic(A, 14, variant=1), 0.0, head=9)  # first copy stays
    assert gap.missing() == [(A, 10, 12)]
    assert gap.ready(A, 9) == []
    assert gap.ready(A, 12) == [log[12], log[13], log[14]]
    assert gap.missing() == [(A, 13, 17)]  # as of the last head reported
    assert gap.ready(A, 15) == []
    assert gap.missing() == [(A, 16, 17)]
    assert gap.ready(A, 18) == []  # 18 is held here and was fetched: dropped
    assert len(gap) == 0
    assert gap.missing() == []


def test_the_gap_buffer_evicts_the_farthest_ahead_first() -> None:
    gap = GapBuffer(per_feed=3, total=5)
    for seq in (5, 6, 9, 7):
        gap.add(A, seq, synthetic(A, seq), 0.0, head=2)
    assert gap.held(A) == [5, 6, 7]
    assert gap.add(B, 50, synthetic(B, 50), 0.0, head=0)
    assert gap.add(B, 3, synthetic(B, 3), 0.0, head=0)
    assert not gap.add(B, 60, synthetic(B, 60), 0.0, head=0)  # the farthest: gone at once
    assert gap.add(C, 4, synthetic(C, 4), 0.0, head=1)
    assert (gap.held(A), gap.held(B), gap.held(C)) == ([5, 6, 7], [3], [4])
    assert len(gap) == 5


def test_the_gap_buffer_keeps_to_its_byte_budget() -> None:
    gap = GapBuffer(max_bytes=1000)
    entry_size = len(synthetic(A, 5).header) + 64 + 24
    for seq in range(3, 40):
        gap.add(A, seq, synthetic(A, seq), 0.0, head=1)
    assert gap.held_bytes <= 1000
    assert gap.held(A) == list(range(3, 3 + 1000 // entry_size))
    assert not gap.add(B, 5, RawEntry(b"h" * 200, bytes(64), bytes(800)), 0.0, head=1)


def test_held_entries_expire() -> None:
    gap = GapBuffer(ttl=10.0)
    gap.add(A, 5, synthetic(A, 5), 0.0, head=1)
    gap.add(A, 6, synthetic(A, 6), 4.0, head=1)
    assert gap.expire(9.0) == 0
    assert gap.expire(10.0) == 1
    assert gap.held(A) == [6]
    gap.add(B, 9, synthetic(B, 9), 14.0, head=1)  # adding expires too
    assert gap.held(A) == []
    assert gap.held(B) == [9]


def test_gap_buffer_bounds_are_checked() -> None:
    with pytest.raises(InvalidArgument):
        GapBuffer(per_feed=0)


class GapBufferMachine(RuleBasedStateMachine):
    """Any adds, readies and expiries: bounds hold, and what comes out is what
    went in, contiguous from the head."""

    def __init__(self) -> None:
        super().__init__()
        self.gap = GapBuffer(per_feed=5, total=12, max_bytes=4000, ttl=20.0)
        self.now = 0.0
        self.heads = dict.fromkeys(FEEDS[:3], 0)
        self.accepted: dict[tuple[bytes, int], RawEntry] = {}

    @rule(feed=st.sampled_from(FEEDS[:3]), ahead=st.integers(0, 12), variant=st.integers(0, 1))
    def add(self, feed: bytes, ahead: int, variant: int) -> None:
        seq = self.heads[feed] + ahead
        if seq < 1:
            return
        raw = synthetic(feed, seq, variant=variant, payload_size=100 + 300 * variant)
        if self.gap.add(feed, seq, raw, self.now, head=self.heads[feed]):
            assert ahead >= 2
            self.accepted[feed, seq] = raw

    @rule(feed=st.sampled_from(FEEDS[:3]), step=st.integers(0, 6))
    def ready(self, feed: bytes, step: int) -> None:
        self.heads[feed] += step
        run = self.gap.ready(feed, self.heads[feed])
        for offset, raw in enumerate(run, start=1):
            assert raw == self.accepted[feed, self.heads[feed] + offset]
        if run:
            # As a driver does: the store took them all; report its new head.
            self.heads[feed] += len(run)
            assert self.gap.ready(feed, self.heads[feed]) == []

    @rule(dt=st.floats(0, 15))
    def wait(self, dt: float) -> None:
        self.now += dt
        self.gap.expire(self.now)

    @precondition(lambda self: len(self.gap) > 0)
    @rule()
    def missing_gaps_sit_between_head_and_first_held(self) -> None:
        for feed, first, last in self.gap.missing():
            assert first == self.heads[feed] + 1 <= last
            assert self.gap.held(feed)[0] == last + 1

    @invariant()
    def bounds_hold(self) -> None:
        assert len(self.gap) <= 12
        assert self.gap.held_bytes <= 4000
        for feed in FEEDS[:3]:
            held = self.gap.held(feed)
            assert len(held) <= 5
            assert all(seq > self.heads[feed] for seq in held)


GapBufferMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40)
test_gap_buffer_against_a_model = GapBufferMachine.TestCase


# --- a pair of peers over a faulty link ---------------------------------------------


@dataclass
class ModelStore:
    """feed -> entries held; takes only the true next entry of a feed's log."""

    truth: dict[bytes, tuple[RawEntry, ...]]
    logs: dict[bytes, list[RawEntry]]

    def head(self, feed: bytes) -> int:
        return len(self.logs.get(feed, ()))

    def ingest(self, feed: bytes, entries: Iterable[RawEntry]) -> None:
        log = self.logs.setdefault(feed, [])
        for raw in entries:
            seq = seq_of(raw)
            if seq == len(log) + 1 and raw == self.truth[feed][seq - 1]:
                log.append(raw)


DELIVER, DROP, DUPLICATE, RECONNECT = "deliver", "drop", "duplicate", "reconnect"


@dataclass
class Link:
    """Drops and duplicates requests' answers, reorders them and cuts the
    connection, at its rates, for its first ``faulty`` messages; then behaves."""

    rng: random.Random
    drop: float
    duplicate: float
    reconnect: float
    reorder: bool
    faulty: int

    def send(self) -> str:
        if self.faulty <= 0:
            return DELIVER
        self.faulty -= 1
        draw = self.rng.random()
        for action, rate in ((RECONNECT, self.reconnect), (DROP, self.drop)):
            if draw < rate:
                return action
            draw -= rate
        return DUPLICATE if draw < self.duplicate else DELIVER

    def pick(self, waiting: int) -> int:
        return self.rng.randrange(waiting) if self.reorder and self.faulty > 0 else 0


def links(*, reconnect: bool = True) -> st.SearchStrategy[Link]:
    return st.builds(
        Link,
        # A seeded generator: drawing from Hypothesis's own would overrun its
        # buffer on long faulty runs.
        rng=st.integers(0, 2**32 - 1).map(random.Random),
        drop=st.sampled_from([0.0, 0.05, 0.3]),
        duplicate=st.sampled_from([0.0, 0.1, 0.3]),
        reconnect=st.sampled_from([0.0, 0.02] if reconnect else [0.0]),
        reorder=st.booleans(),
        faulty=st.integers(0, 300),
    )


@dataclass
class Pair:
    """The empty side's driver: a planner, a gap buffer and a model store,
    with the serving side answering from ``served`` over ``link``."""

    served: dict[bytes, tuple[RawEntry, ...]]
    store: ModelStore
    scope: frozenset[bytes]
    urgent: frozenset[bytes]
    link: Link
    window: int
    range_size: int
    max_entries: int
    now: float = 0.0
    wire: list[EntryBatch] = field(default_factory=list)
    problems: list[SyncProblem] = field(default_factory=list)
    sent: Counter[int] = field(default_factory=Counter)
    gap: GapBuffer = field(default_factory=GapBuffer)
    connections: int = 0
    synced: int = 0

    def connect(self) -> SyncPlanner:
        self.connections += 1
        self.wire.clear()
        self.sent.clear()
        heads = {feed: self.store.head(feed) for feed in self.scope}
        planner = SyncPlanner(
            self.scope,
            heads,
            urgent=self.urgent,
            window=self.window,
            timeout=TIMEOUT,
            range_size=self.range_size,
        )
        server = SyncPlanner(self.served, {f: len(log) for f, log in self.served.items()})
        for message in server.hello():
            planner.on_heads(over_wire(message))
        return planner

    def ingest(self, planner: SyncPlanner, outcome: BatchOutcome) -> None:
        self.problems += outcome.problems
        feed = outcome.feed
        if feed is None:
            return
        if outcome.entries:
            self.synced += len(outcome.entries)
            self.store.ingest(feed, outcome.entries)
            self.problems += planner.on_ingested(feed, self.store.head(feed))
        for seq, raw in outcome.preview:
            self.gap.add(feed, seq, raw, self.now, head=self.store.head(feed))
        while run := self.gap.ready(feed, self.store.head(feed)):
            self.store.ingest(feed, run)
            planner.on_local_head(feed, self.store.head(feed))

    def check(self, planner: SyncPlanner, want: Want) -> None:
        assert want.feed in self.scope
        assert want.first > self.store.head(want.feed), "asked for what it holds"
        assert want.last - want.first + 1 <= (
            PREVIEW_SIZE if want.newest_first else self.range_size
        )
        assert want.last <= len(self.served[want.feed])
        self.sent[want.request] += 1
        assert self.sent[want.request] <= 2  # sent at most twice

    def run(self) -> None:
        planner = self.connect()
        for _ in range(20_000):
            self.problems += planner.expire(self.now)
            reconnected = False
            for want in planner.next_requests(self.now):
                self.check(planner, want)
                action = self.link.send()
                if action == RECONNECT:
                    planner, reconnected = self.connect(), True
                    break
                if action == DROP:
                    continue
                batch = serve(self.served[want.feed], want, max_entries=self.max_entries)
                self.wire.append(batch)
                if action == DUPLICATE:
                    self.wire.append(batch)
            assert planner.outstanding <= self.window
            assert planner.parked <= 2 * self.window
            # The count behind that bound is bookkeeping: check it against the slots.
            slots = [slot for state in planner._feeds.values() for slot in state.slots]
            assert planner.parked == sum(slot.arrived is not None for slot in slots)
            if reconnected:
                continue
            if self.wire:
                batch = self.wire.pop(self.link.pick(len(self.wire)))
                self.ingest(planner, planner.on_batch(batch, self.now))
                self.now += 0.01
            elif planner.idle:
                return
            else:
                deadline = planner.next_deadline()
                assert deadline is not None, "stuck: nothing in flight, yet not idle"
                self.now = max(self.now, deadline)
        raise AssertionError("sync did not finish")


@settings(max_examples=200)
@given(
    lengths=st.lists(st.one_of(st.integers(0, 12), st.integers(250, 700)), min_size=5, max_size=5),
    held=st.lists(st.floats(0, 1), min_size=5, max_size=5),
    in_scope=st.lists(st.booleans(), min_size=5, max_size=5),
    blocked=st.sets(st.sampled_from(FEEDS[:5]), max_size=2),
    urgent=st.sets(st.sampled_from(FEEDS[:5]), max_size=2),
    link=links(),
    window=st.integers(1, 5),
    range_size=st.sampled_from([7, 64, MAX_RANGE]),
    max_entries=st.sampled_from([5, 100, MAX_RANGE]),
)
def test_the_empty_side_ends_with_every_feed_in_scope_whatever_the_link_did(
    lengths: list[int],
    held: list[float],
    in_scope: list[bool],
    blocked: set[bytes],
    urgent: set[bytes],
    link: Link,
    window: int,
    range_size: int,
    max_entries: int,
) -> None:
    served = {feed: synthetic_log(feed, n) for feed, n in zip(FEEDS, lengths, strict=False)}
    local = {
        feed: list(log[: int(len(log) * part)])
        for (feed, log), part in zip(served.items(), held, strict=True)
    }
    wanted = {feed for feed, yes in zip(FEEDS, in_scope, strict=False) if yes}
    scope = frozenset(wanted - blocked)
    pair = Pair(
        served=served,
        store=ModelStore(served, {feed: list(log) for feed, log in local.items()}),
        scope=scope,
        urgent=frozenset(urgent),
        link=link,
        window=window,
        range_size=range_size,
        max_entries=max_entries,
    )
    pair.run()
    event(f"entries synced: {'>500' if pair.synced > 500 else '>0' if pair.synced else '0'}")
    event(f"connections: {min(pair.connections, 3)}")
    for fault in sorted(set(kinds(pair.problems))):
        event(f"problem: {fault}")
    for feed, log in served.items():
        expected = list(log) if feed in scope else local[feed]
        assert pair.store.logs[feed] == expected
    # An honest peer over a bad link is blamed for the link's faults only.
    assert set(kinds(pair.problems)) <= {Fault.UNEXPECTED_BATCH, Fault.UNRESPONSIVE}
    if not link.drop:
        assert Fault.UNRESPONSIVE not in kinds(pair.problems)


@given(
    length=st.integers(1, 300),
    bad_seq=st.integers(1, 300),
    link=links(reconnect=False),
)
def test_a_tampered_entry_ends_that_feed_at_the_entry_before_it(
    length: int, bad_seq: int, link: Link
) -> None:
    bad_seq = min(bad_seq, length)
    truth = {A: synthetic_log(A, length), B: synthetic_log(B, 50)}
    served = dict(truth)
    served[A] = tuple(
        synthetic(A, seq, variant=9) if seq == bad_seq else raw
        for seq, raw in enumerate(truth[A], start=1)
    )
    pair = Pair(
        served=served,
        store=ModelStore(truth, {}),
        scope=frozenset({A, B}),
        urgent=frozenset(),
        link=link,
        window=3,
        range_size=64,
        max_entries=MAX_RANGE,
    )
    pair.run()
    assert pair.store.logs[A] == list(truth[A][: bad_seq - 1])
    assert pair.store.logs[B] == list(truth[B])
    assert Fault.REJECTED in kinds(pair.problems)


# --- two real stores ------------------------------------------------------------------


def key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"sync-test-key-%d" % n).digest())


def raw_of(stored: StoredEntry) -> RawEntry:
    return RawEntry(stored.entry.header_bytes, stored.entry.signature, stored.entry.payload)


def signed_log(key: Ed25519PrivateKey, count: int) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, count + 1):
        prev = entries[-1].id if entries else None
        entries.append(
            create_entry(key, seq=seq, prev=prev, timestamp=seq, payload=Post(f"{seq}"))
        )
    return entries


def test_a_new_follower_gets_whole_logs_forks_included(tmp_path: Path) -> None:
    keys = [key(n) for n in range(3)]
    feeds = [k.public_key().public_bytes_raw() for k in keys]
    logs = [signed_log(k, count) for k, count in zip(keys, (600, 3, 40), strict=True)]
    fork = create_entry(keys[1], seq=2, prev=logs[1][0].id, timestamp=99, payload=Post("other"))
    with Store.open(tmp_path / "a.db") as source, Store.open(tmp_path / "b.db") as target:
        source.ingest([*itertools.chain(*logs), fork])
        assert len(source.forks(feeds[1])) == 1
        target.ingest(logs[2][:10])

        planner = SyncPlanner(feeds, {f: target.latest_seq(f) for f in feeds}, urgent=[feeds[0]])
        server = SyncPlanner(feeds, {f: source.latest_seq(f) for f in feeds})
        for message in server.hello():
            planner.on_heads(over_wire(message))
        gap = GapBuffer()
        wire: deque[EntryBatch] = deque()
        previewed = 0
        while True:
            for want in map(over_wire, planner.next_requests(0.0)):
                held = source.log(want.feed, from_seq=want.first)
                rows = [raw_of(s) for s in held if s.entry.seq <= want.last]
                wire.append(over_wire(answer(want, rows)))
            if not wire:
                break
            outcome = planner.on_batch(wire.popleft(), 0.0)
            assert outcome.problems == ()
            feed = outcome.feed
            assert feed is not None
            if outcome.entries:
                parsed = [parse_entry_untrusted(*astuple(raw)) for raw in outcome.entries]
                assert target.ingest(parsed).rejected == ()
                assert planner.on_ingested(feed, target.latest_seq(feed)) == []
            for seq, raw in outcome.preview:
                previewed += gap.add(feed, seq, raw, 0.0, head=target.latest_seq(feed))
            while run := gap.ready(feed, target.latest_seq(feed)):
                target.ingest(parse_entry_untrusted(*astuple(raw)) for raw in run)
                planner.on_local_head(feed, target.latest_seq(feed))
        assert planner.idle
        for feed in feeds:
            assert [s.entry.id for s in target.log(feed)] == [s.entry.id for s in source.log(feed)]
        assert len(target.forks(feeds[1])) == 1
        assert previewed == PREVIEW_SIZE
        assert len(gap) == 0  # the backfill reached the preview: nothing left held
