"""The gossip router: one behaviour per test, a simulated network of routers,
and a hostile peer driven by Hypothesis."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gossip.router import Delivery, Router, RouterParams, Verdict
from gossip.wire import (
    MAX_TOPICS,
    SQUARE,
    Choke,
    EntryBatch,
    EntryMessage,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Prune,
    RawEntry,
    Subscribe,
    Unchoke,
    Unsubscribe,
    WireMessage,
    encode_message,
    feed_topic,
)
from storage import InvalidArgument

from .simnet import SimNet

ME = b"\x00" * 32
TOPIC = feed_topic(b"\xaa" * 32)
OTHER = feed_topic(b"\xbb" * 32)
P = RouterParams()


def peer(n: int) -> bytes:
    return n.to_bytes(32, "big")


def entry(
    n: int, *, size: int = 10, topics: tuple[str, ...] = (TOPIC,)
) -> tuple[bytes, EntryMessage]:
    """An id and an entry message; the router never looks inside the entry."""
    raw = RawEntry(b"header%d" % n, b"s" * 64, bytes(size))
    return n.to_bytes(32, "big"), EntryMessage(topics, raw)


def router(params: RouterParams = P, seed: int = 0) -> Router:
    return Router(ME, params, random.Random(seed))


def connected(n: int, *, topics: tuple[str, ...] = (TOPIC,), params: RouterParams = P) -> Router:
    """A router with peers 1..n, all subscribed to ``topics``; outputs drained."""
    r = router(params)
    for i in range(1, n + 1):
        r.add_peer(peer(i), 0.0)
        r.handle(peer(i), Subscribe(topics), 0.0)
    r.drain()
    return r


def sent(r: Router, kind: type[WireMessage] | None = None) -> list[tuple[bytes, WireMessage]]:
    return [(to, m) for to, m in r.drain() if kind is None or isinstance(m, kind)]


def receivers(messages: list[tuple[bytes, WireMessage]]) -> set[bytes]:
    return {to for to, _ in messages}


def accepted_from(r: Router, source: bytes, n: int, now: float = 0.0) -> bytes:
    """Entry ``n`` arrives from ``source`` and the node accepts it; returns its id."""
    eid, message = entry(n)
    r.handle_entry(source, eid, message, now)
    r.validated(eid, Verdict.ACCEPT, now)
    r.deliveries()
    return eid


def choke_by_duplicates(r: Router, mesh: list[bytes], *, first: bytes) -> set[bytes]:
    """An entry comes from ``first``, then a copy from each other mesh peer in
    turn; at the next heartbeat the router chokes the late ones. Returns the
    peers it sent CHOKE for TOPIC (outputs drained)."""
    eid, message = entry(99)
    r.handle_entry(first, eid, message, 5.0)
    for other in mesh:
        if other != first:
            r.handle_entry(other, eid, message, 5.0)
    r.validated(eid, Verdict.ACCEPT, 5.0)
    r.deliveries()
    r.drain()
    r.heartbeat(6.0)
    return {to for to, m in sent(r, Choke) if TOPIC in m.topics}  # type: ignore[attr-defined]


# --- parameters and misuse ------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"d_low": 7},
        {"d_high": 5},
        {"d_score": 7},
        {"mcache_gossip": 6},
        {"gossip_threshold": 1.0},
        {"graylist_threshold": -5.0},
        {"disconnect_threshold": -40.0},
        {"invalid_weight": 1.0},
        {"behaviour_decay": 1.5},
        {"max_pending": 0},
        {"prune_backoff": 4000},
        {"seen_ttl": math.nan},
    ],
)
def test_inconsistent_parameters_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument):
        RouterParams(**changes)  # type: ignore[arg-type]


def test_caller_mistakes_raise_invalid_argument() -> None:
    r = router()
    with pytest.raises(InvalidArgument):
        r.add_peer(ME, 0.0)
    r.add_peer(peer(1), 0.0)
    with pytest.raises(InvalidArgument):
        r.add_peer(peer(1), 0.0)
    with pytest.raises(InvalidArgument):
        r.handle(peer(2), Graft(TOPIC), 0.0)
    with pytest.raises(InvalidArgument):
        r.remove_peer(peer(2), 0.0)
    with pytest.raises(InvalidArgument):
        r.handle(peer(1), EntryBatch(1, (), True), 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        r.handle(peer(1), entry(1)[1], 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        r.handle_entry(peer(1), b"short", entry(1)[1], 0.0)
    with pytest.raises(InvalidArgument):
        r.publish(b"short", entry(1)[1], 0.0)
    with pytest.raises(InvalidArgument):
        r.score(peer(2))


# --- peers, topics and the mesh ---------------------------------------------------


def test_a_new_peer_is_told_our_topics_in_bounded_messages() -> None:
    r = router()
    topics = [feed_topic(i.to_bytes(32, "big")) for i in range(MAX_TOPICS + 3)]
    for topic in topics:
        r.join(topic, 0.0)
    r.add_peer(peer(1), 0.0)
    subs = sent(r, Subscribe)
    assert [len(m.topics) for _, m in subs] == [MAX_TOPICS, 3]  # type: ignore[union-attr]
    assert [t for _, m in subs for t in m.topics] == topics  # type: ignore[union-attr]


def test_join_subscribes_with_every_peer_and_grafts_d_subscribers() -> None:
    r = connected(10)
    for i in (11, 12):  # connected, but not in the topic
        r.add_peer(peer(i), 0.0)
    r.drain()
    r.join(TOPIC, 0.0)
    out = r.drain()
    subs = [to for to, m in out if m == Subscribe((TOPIC,))]
    grafts = [to for to, m in out if m == Graft(TOPIC)]
    assert sorted(subs) == [peer(i) for i in range(1, 13)]
    assert len(grafts) == P.d
    assert set(grafts) <= {peer(i) for i in range(1, 11)}
    assert r.mesh(TOPIC) == set(grafts)
    assert r.joined == {TOPIC}
    r.join(TOPIC, 0.0)  # joining twice does nothing
    assert r.drain() == []


def test_leave_prunes_the_mesh_and_unsubscribes() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = r.mesh(TOPIC)
    r.drain()
    r.leave(TOPIC, 0.0)
    out = r.drain()
    assert {to for to, m in out if m == Prune(TOPIC, P.prune_backoff)} == mesh
    assert {to for to, m in out if m == Unsubscribe((TOPIC,))} == {peer(i) for i in range(1, 9)}
    assert r.mesh(TOPIC) == frozenset()
    r.leave(TOPIC, 0.0)
    assert r.drain() == []


def test_heartbeat_grafts_up_to_d_when_the_mesh_falls_below_d_low() -> None:
    r = connected(10)
    r.join(TOPIC, 0.0)
    first = sorted(r.mesh(TOPIC))
    for p in first[:3]:  # three mesh peers leave the mesh: 3 < d_low remain
        r.handle(p, Prune(TOPIC, 60), 0.0)
    assert len(r.mesh(TOPIC)) == 3
    r.drain()
    r.heartbeat(1.0)
    grafts = sent(r, Graft)
    assert len(r.mesh(TOPIC)) == P.d
    # Peers that pruned us are in backoff: not grafted again.
    assert receivers(grafts).isdisjoint(first[:3])


def test_heartbeat_trims_an_oversubscribed_mesh_keeping_the_best_scored() -> None:
    r = connected(20)
    r.join(TOPIC, 0.0)
    for i in range(1, 21):
        r.handle(peer(i), Graft(TOPIC), 0.0)
    assert len(r.mesh(TOPIC)) == 20
    best = {peer(i) for i in range(1, P.d_score + 1)}
    for i, p in enumerate(sorted(best)):
        for n in range(5):
            accepted_from(r, p, 100 * i + n)
    r.drain()
    r.heartbeat(1.0)
    pruned = receivers(sent(r, Prune))
    assert len(r.mesh(TOPIC)) == P.d
    assert best <= r.mesh(TOPIC)
    assert pruned == {peer(i) for i in range(1, 21)} - r.mesh(TOPIC)


def test_mesh_stays_within_d_low_and_d_high_over_many_heartbeats() -> None:
    r = connected(30)
    r.join(TOPIC, 0.0)
    rng = random.Random(7)
    for t in range(1, 200):
        p = peer(rng.randrange(1, 31))
        r.handle(p, rng.choice([Graft(TOPIC), Prune(TOPIC, 1)]), t - 0.5)
        r.heartbeat(float(t))
        assert P.d_low <= len(r.mesh(TOPIC)) <= P.d_high
        r.drain()


def test_unsubscribe_removes_a_peer_from_the_mesh() -> None:
    r = connected(6)
    r.join(TOPIC, 0.0)
    p = next(iter(r.mesh(TOPIC)))
    r.handle(p, Unsubscribe((TOPIC,)), 0.0)
    assert p not in r.mesh(TOPIC)


def test_graft_during_backoff_is_penalised_and_answered_with_prune() -> None:
    r = connected(6)
    r.join(TOPIC, 0.0)
    p = next(iter(r.mesh(TOPIC)))
    r.handle(p, Prune(TOPIC, 60), 0.0)
    r.drain()
    r.handle(p, Graft(TOPIC), 5.0)  # within the flood threshold: counts double
    assert sent(r) == [(p, Prune(TOPIC, P.prune_backoff))]
    assert p not in r.mesh(TOPIC)
    assert r.score(p) < 0
    # The backoff was extended from the refused graft: still refused at 61 s.
    r.handle(p, Graft(TOPIC), 61.0)
    assert p not in r.mesh(TOPIC)
    r.drain()
    r.heartbeat(200.0)  # backoff over; the penalty decays but is not gone
    r.handle(p, Graft(TOPIC), 200.0)
    assert p not in r.mesh(TOPIC)  # refused for its negative score, without a penalty
    before = r.score(p)
    for t in range(201, 800):
        r.heartbeat(float(t))
    assert r.score(p) == 0 > before
    r.handle(p, Graft(TOPIC), 800.0)
    assert p in r.mesh(TOPIC)


def test_graft_for_a_topic_we_are_not_in_is_ignored() -> None:
    r = connected(2)
    r.handle(peer(1), Graft(OTHER), 0.0)
    r.handle(peer(1), Prune(OTHER, 60), 0.0)
    assert r.drain() == []
    assert r.score(peer(1)) == 0
    assert r.stats().backoffs == 0


def test_a_prune_keeps_us_from_grafting_that_peer_until_its_backoff_ends() -> None:
    r = connected(4)
    r.join(TOPIC, 0.0)
    assert len(r.mesh(TOPIC)) == 4
    r.handle(peer(1), Prune(TOPIC, 30), 0.0)
    for i in (2, 3, 4):  # mesh at 0: every heartbeat tries to graft
        r.handle(peer(i), Prune(TOPIC, 0), 0.0)  # 0 means the default backoff
    r.drain()
    r.heartbeat(29.0)
    assert sent(r, Graft) == []
    r.heartbeat(31.0)
    assert sent(r, Graft) == [(peer(1), Graft(TOPIC))]
    r.heartbeat(61.0)
    assert receivers(sent(r, Graft)) == {peer(2), peer(3), peer(4)}


# --- entries ----------------------------------------------------------------------


def test_publish_floods_to_every_subscriber_above_the_publish_threshold() -> None:
    r = connected(10, topics=(SQUARE,))
    r.join(SQUARE, 0.0)
    r.add_peer(peer(11), 0.0)  # not subscribed
    r.add_peer(peer(12), 0.0)
    r.handle(peer(12), Subscribe((TOPIC,)), 0.0)
    r.drain()
    eid, message = entry(1, topics=(TOPIC, SQUARE))
    r.publish(eid, message, 0.0)
    out = sent(r, EntryMessage)
    assert receivers(out) == {peer(i) for i in range(1, 11)} | {peer(12)}
    assert len(out) == 11
    r.publish(eid, message, 0.0)  # once only
    assert r.drain() == []


def test_publish_skips_peers_below_the_publish_threshold() -> None:
    r = connected(3)
    for n in range(2):  # two invalid entries: -40 < publish threshold
        eid, message = entry(n)
        r.join(TOPIC, 0.0)
        r.handle_entry(peer(1), eid, message, 0.0)
        r.validated(eid, Verdict.REJECT, 0.0)
    assert r.score(peer(1)) < P.publish_threshold
    r.drain()
    eid, message = entry(9)
    r.publish(eid, message, 0.0)
    assert receivers(sent(r, EntryMessage)) == {peer(2), peer(3)}


def test_a_valid_entry_is_forwarded_to_the_mesh_only_after_acceptance() -> None:
    r = connected(10)
    r.join(TOPIC, 0.0)
    mesh = r.mesh(TOPIC)
    source = next(iter(mesh))
    r.drain()
    eid, message = entry(1)
    r.handle_entry(source, eid, message, 0.0)
    assert r.deliveries() == [Delivery(source, eid, message)]
    assert sent(r, EntryMessage) == []  # nothing before the verdict
    r.validated(eid, Verdict.ACCEPT, 0.0)
    out = sent(r, EntryMessage)
    assert receivers(out) == mesh - {source}
    assert len(out) == len(mesh) - 1
    assert r.score(source) > 0  # first delivery
    r.validated(eid, Verdict.ACCEPT, 0.0)  # a second verdict is ignored
    assert r.drain() == []


def test_an_entry_from_a_non_mesh_peer_is_forwarded_to_the_whole_mesh() -> None:
    r = connected(10)
    r.join(TOPIC, 0.0)
    outside = next(p for p in (peer(i) for i in range(1, 11)) if p not in r.mesh(TOPIC))
    r.drain()
    accepted_from(r, outside, 1)
    assert receivers(sent(r, EntryMessage)) == r.mesh(TOPIC)


def test_duplicates_are_delivered_once_and_not_sent_back() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    a, b, c = sorted(r.mesh(TOPIC))[:3]
    r.drain()
    eid, message = entry(1)
    r.handle_entry(a, eid, message, 0.0)
    r.handle_entry(b, eid, message, 0.0)  # during validation
    r.handle_entry(a, eid, message, 0.0)
    assert len(r.deliveries()) == 1
    r.validated(eid, Verdict.ACCEPT, 0.0)
    assert receivers(sent(r, EntryMessage)) == r.mesh(TOPIC) - {a, b}
    r.handle_entry(c, eid, message, 1.0)  # after: already seen
    assert r.deliveries() == []
    assert r.drain() == []


def test_an_entry_in_none_of_our_topics_is_dropped() -> None:
    r = connected(3)
    r.join(TOPIC, 0.0)
    eid, message = entry(1, topics=(OTHER,))
    r.handle_entry(peer(1), eid, message, 0.0)
    assert r.deliveries() == []
    assert r.stats().pending == 0


def test_an_invalid_entry_is_never_forwarded_and_its_sender_is_penalised() -> None:
    r = connected(10)
    r.join(TOPIC, 0.0)
    a, b = sorted(r.mesh(TOPIC))[:2]
    r.drain()
    eid, message = entry(1)
    r.handle_entry(a, eid, message, 0.0)
    r.handle_entry(b, eid, message, 0.0)  # the same bytes: invalid as well
    r.validated(eid, Verdict.REJECT, 0.0)
    assert sent(r, EntryMessage) == []
    assert r.score(a) < 0
    assert r.score(b) < 0
    r.heartbeat(1.0)  # negative scores leave the mesh
    assert {a, b}.isdisjoint(r.mesh(TOPIC))
    assert {(a, Prune(TOPIC, 60)), (b, Prune(TOPIC, 60))} <= set(r.drain())


def test_faults_found_outside_gossip_score_the_peer_like_its_own() -> None:
    r = connected(4)
    bad, good = peer(1), peer(2)
    r.penalise(bad, "sent forged entries by sync", invalid=1.0)
    assert r.score(bad) < 0 <= r.score(good)
    assert r.disconnects() == []  # one is not enough
    r.penalise(bad, "sent forged entries by sync", invalid=9.0)
    hangups = r.disconnects()
    assert [p for p, _ in hangups] == [bad]
    assert "forged entries by sync" in hangups[0][1]
    r.penalise(peer(99), "not connected")  # ignored
    with pytest.raises(InvalidArgument):
        r.penalise(good, "a reward in disguise", behaviour=-1.0)


def test_repeated_invalid_entries_get_the_sender_disconnected_once() -> None:
    r = connected(4)
    r.join(TOPIC, 0.0)
    bad = peer(1)
    for n in range(20):
        eid, message = entry(n)
        r.handle_entry(bad, eid, message, float(n))
        for delivery in r.deliveries():
            r.validated(delivery.entry_id, Verdict.REJECT, float(n))
    hangups = r.disconnects()
    assert [p for p, _ in hangups] == [bad]
    assert "graylisted" in hangups[0][1] or "invalid" in hangups[0][1]
    assert r.disconnects() == []
    assert bad not in r.mesh(TOPIC)
    # Ignored from now on, and sent nothing.
    r.drain()
    r.handle(bad, IWant((b"\x01" * 32,)), 30.0)
    r.handle_entry(bad, *entry(99), 30.0)
    r.publish(*entry(100), 30.0)
    r.heartbeat(31.0)
    assert bad not in receivers(r.drain())
    assert r.deliveries() == []
    # The driver hangs up; reconnecting does not clear the score.
    r.remove_peer(bad, 32.0)
    r.add_peer(bad, 33.0)
    assert r.score(bad) < P.graylist_threshold


def test_a_graylisted_peer_is_ignored() -> None:
    r = connected(3)
    r.join(TOPIC, 0.0)
    for n in range(3):  # -90: below graylist, above disconnect
        eid, message = entry(n)
        r.handle_entry(peer(1), eid, message, 0.0)
        r.validated(eid, Verdict.REJECT, 0.0)
    assert P.disconnect_threshold < r.score(peer(1)) < P.graylist_threshold
    r.drain()
    r.deliveries()
    r.handle(peer(1), IHave(((TOPIC, (b"\x07" * 32,)),)), 0.0)
    r.handle_entry(peer(1), *entry(50), 0.0)
    assert r.drain() == []
    assert r.deliveries() == []


def test_a_rejected_copy_makes_way_for_a_genuine_one_under_the_same_id() -> None:
    # The entry id covers header and signature, not payload or topics: an
    # attacker can race a spoiled copy of a genuine entry.
    r = connected(6)
    r.join(TOPIC, 0.0)
    attacker, honest = peer(1), peer(2)
    eid, genuine = entry(1)
    spoiled = EntryMessage(genuine.topics, RawEntry(genuine.entry.header, b"s" * 64, b"junk"))
    r.handle_entry(attacker, eid, spoiled, 0.0)
    r.handle_entry(honest, eid, genuine, 0.0)
    assert r.deliveries() == [Delivery(attacker, eid, spoiled)]
    r.validated(eid, Verdict.REJECT, 0.0)
    assert r.deliveries() == [Delivery(honest, eid, genuine)]
    r.validated(eid, Verdict.ACCEPT, 0.0)
    assert r.score(attacker) < 0 < r.score(honest)
    forwarded = sent(r, EntryMessage)
    assert forwarded
    assert all(m == genuine for _, m in forwarded)
    assert {attacker, honest}.isdisjoint(receivers(forwarded))


def test_a_rejected_large_entry_is_asked_again_of_those_told_idontwant() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    attacker = next(iter(r.mesh(TOPIC)))
    r.drain()
    eid, message = entry(1, size=P.idontwant_min_size + 1)
    r.handle_entry(attacker, eid, message, 0.0)
    r.deliveries()
    told = receivers(sent(r, IDontWant))
    assert told == r.mesh(TOPIC) - {attacker}
    r.validated(eid, Verdict.REJECT, 0.0)
    assert set(r.drain()) == {(p, IWant((eid,))) for p in told}
    r.handle_entry(peer(8), eid, message, 0.0)  # a copy can be delivered again
    assert len(r.deliveries()) == 1


def test_an_ignored_entry_is_remembered_but_neither_forwarded_nor_scored() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    r.drain()
    eid, message = entry(1)
    r.handle_entry(peer(1), eid, message, 0.0)
    r.drain()  # the IDONTWANTs sent on receipt
    r.validated(eid, Verdict.IGNORE, 0.0)
    assert r.drain() == []
    assert r.score(peer(1)) == 0
    r.handle_entry(peer(2), eid, message, 0.0)
    assert r.deliveries() == [Delivery(peer(1), eid, message)]


# --- IHAVE, IWANT, IDONTWANT ----------------------------------------------------------


def test_ihave_iwant_entry() -> None:
    r = connected(3)
    r.join(TOPIC, 0.0)
    r.drain()
    eid, message = entry(1)
    r.handle(peer(1), IHave(((TOPIC, (eid, eid)),)), 0.0)
    assert sent(r) == [(peer(1), IWant((eid,)))]
    r.handle(peer(2), IHave(((TOPIC, (eid,)),)), 0.5)  # asked already, this heartbeat
    assert sent(r) == []
    r.handle_entry(peer(1), eid, message, 0.6)
    assert r.deliveries() == [Delivery(peer(1), eid, message)]
    r.validated(eid, Verdict.ACCEPT, 0.6)
    r.handle(peer(3), IHave(((TOPIC, (eid,)),)), 0.7)  # seen: not asked again
    assert sent(r, IWant) == []
    for t in range(1, 6):
        r.heartbeat(float(t))
    assert r.score(peer(1)) > 0  # kept its promise


def test_a_lost_iwant_answer_is_asked_of_another_advertiser_next_heartbeat() -> None:
    r = connected(3)
    r.join(TOPIC, 0.0)
    r.drain()
    eid, _ = entry(1)
    r.handle(peer(1), IHave(((TOPIC, (eid,)),)), 0.0)
    r.heartbeat(1.0)
    r.drain()
    r.handle(peer(2), IHave(((TOPIC, (eid,)),)), 1.1)
    assert sent(r) == [(peer(2), IWant((eid,)))]


def test_ihave_answered_by_gossip_between_two_routers() -> None:
    # a publishes; b is subscribed but not in a's mesh (it pruned a), so it
    # learns of the entry from a's gossip and asks for it.
    a, b = Router(peer(1), P, random.Random(1)), Router(peer(2), P, random.Random(2))
    a.add_peer(peer(2), 0.0)
    b.add_peer(peer(1), 0.0)
    a.join(TOPIC, 0.0)
    b.join(TOPIC, 0.0)

    def pump(now: float) -> list[WireMessage]:
        seen: list[WireMessage] = []
        for _ in range(10):
            moved = False
            for src, dst in ((a, b), (b, a)):
                for _, m in src.drain():
                    moved = True
                    seen.append(m)
                    sender = peer(1) if src is a else peer(2)
                    if isinstance(m, EntryMessage):
                        dst.handle_entry(sender, m.entry.header.ljust(32, b"\0"), m, now)
                    else:
                        dst.handle(sender, m, now)
                for d in dst.deliveries():
                    dst.validated(d.entry_id, Verdict.ACCEPT, now)
            if not moved:
                break
        return seen

    pump(0.0)
    a.heartbeat(0.05)
    b.heartbeat(0.05)
    pump(0.05)
    assert a.mesh(TOPIC) == {peer(2)}
    b.leave(TOPIC, 0.1)
    b.join(TOPIC, 0.2)  # b is back, a and b in backoff: not in each other's mesh
    pump(0.2)
    assert a.mesh(TOPIC) == b.mesh(TOPIC) == frozenset()
    message = EntryMessage((TOPIC,), RawEntry(b"h" * 32, b"s" * 64, b"payload"))
    a.publish(b"h" * 32, message, 0.3)
    a.drain()  # the flood publish is lost
    a.heartbeat(1.0)
    kinds = [m.type for m in pump(1.0)]
    assert kinds == ["ihave", "iwant", "entry"]
    for t in range(2, 8):
        b.heartbeat(float(t))
    assert b.score(peer(1)) > 0


def test_an_unanswered_iwant_is_a_broken_promise() -> None:
    r = connected(2)
    r.join(TOPIC, 0.0)
    for n in range(3):
        r.handle(peer(1), IHave(((TOPIC, (entry(n)[0],)),)), float(n))
        r.heartbeat(float(n) + 1)
    r.handle(peer(2), IHave(((TOPIC, (entry(10)[0],)),)), 0.0)
    r.handle_entry(peer(2), *entry(10), 1.0)  # peer 2 keeps its promise
    for t in range(4, 8):
        r.heartbeat(float(t))
    assert r.score(peer(1)) < 0
    assert r.score(peer(2)) == 0  # delivered, but never judged: no credit
    assert r.stats().promises == 0


def test_ihave_is_bounded_per_peer_and_heartbeat() -> None:
    params = RouterParams(max_iwant_ids=50, max_ihave_messages=3)
    r = connected(1, params=params)
    r.join(TOPIC, 0.0)
    r.drain()
    for n in range(10):
        ids = tuple((1000 * n + k).to_bytes(32, "big") for k in range(20))
        r.handle(peer(1), IHave(((TOPIC, ids),)), 0.0)
    asked = [i for _, m in sent(r, IWant) for i in m.ids]  # type: ignore[union-attr]
    assert len(asked) == 50
    assert r.stats().promises == 3
    r.heartbeat(1.0)
    r.handle(peer(1), IHave(((TOPIC, (b"\x09" * 32,)),)), 1.0)
    assert len(sent(r, IWant)) == 1


def test_ihave_for_a_topic_we_are_not_in_is_ignored() -> None:
    r = connected(1)
    r.handle(peer(1), IHave(((OTHER, (b"\x01" * 32,)),)), 0.0)
    assert r.drain() == []


def test_iwant_is_answered_from_the_message_cache_and_floods_are_penalised() -> None:
    r = connected(2)
    r.join(TOPIC, 0.0)
    eid, message = entry(1)
    r.publish(eid, message, 0.0)
    r.drain()
    r.handle(peer(1), IWant((eid, b"\x05" * 32)), 0.1)  # one known, one unknown id
    assert sent(r) == [(peer(1), message)]
    for _ in range(P.max_iwant_per_id - 1):
        r.handle(peer(1), IWant((eid,)), 0.2)
    assert len(sent(r)) == P.max_iwant_per_id - 1
    r.handle(peer(1), IWant((eid, eid, eid)), 0.3)
    r.handle(peer(1), IWant((eid,)), 0.3)
    assert sent(r) == []
    assert r.score(peer(1)) < 0
    r.heartbeat(1.0)  # a new heartbeat, a new allowance
    r.handle(peer(1), IWant((eid,)), 1.1)
    assert sent(r, EntryMessage) == [(peer(1), message)]


def test_idontwant_is_respected_when_forwarding() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    a, b = sorted(r.mesh(TOPIC))[:2]
    r.drain()
    eid, message = entry(1)
    r.handle(b, IDontWant((eid,)), 0.0)
    assert not r.wants(b, eid)
    assert r.wants(a, eid)
    r.handle_entry(a, eid, message, 0.0)
    r.validated(eid, Verdict.ACCEPT, 0.0)
    assert receivers(sent(r, EntryMessage)) == r.mesh(TOPIC) - {a, b}


def test_idontwant_min_size_0_announces_every_entry_on_receipt_before_its_verdict() -> None:
    r = connected(8, params=RouterParams(idontwant_min_size=0))
    r.join(TOPIC, 0.0)
    source = next(iter(r.mesh(TOPIC)))
    r.drain()
    eid, message = entry(1, size=0)
    r.handle_entry(source, eid, message, 0.0)
    out = r.drain()
    assert set(out) == {(p, IDontWant((eid,))) for p in r.mesh(TOPIC) - {source}}
    # One message object for all of them, so that a driver encodes it once.
    assert len({id(m) for _, m in out}) == 1
    deleted_id, deleted = entry(2)
    deleted = EntryMessage(deleted.topics, RawEntry(deleted.entry.header, b"s" * 64, None))
    r.handle_entry(source, deleted_id, deleted, 0.0)
    assert receivers(sent(r, IDontWant)) == r.mesh(TOPIC) - {source}


def test_idontwant_min_size_leaves_smaller_entries_unannounced() -> None:
    params = RouterParams(idontwant_min_size=512)
    r = connected(8, params=params)
    r.join(TOPIC, 0.0)
    source = next(iter(r.mesh(TOPIC)))
    r.drain()
    small_id, small = entry(1, size=511)
    r.handle_entry(source, small_id, small, 0.0)
    assert sent(r, IDontWant) == []
    big_id, big = entry(2, size=512)
    r.handle_entry(source, big_id, big, 0.0)
    out = sent(r)
    assert set(out) == {(p, IDontWant((big_id,))) for p in r.mesh(TOPIC) - {source}}


def test_by_default_only_large_entries_are_announced_and_not_to_choked_peers() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    r.drain()
    small_id, small = entry(1, size=P.idontwant_min_size - 1)
    r.handle_entry(mesh[0], small_id, small, 0.0)
    assert sent(r, IDontWant) == []
    choked = choke_by_duplicates(r, mesh, first=mesh[0])
    assert choked
    big_id, big = entry(50, size=P.idontwant_min_size)
    r.handle_entry(mesh[0], big_id, big, 9.0)
    # Choked peers push nothing to us: they need not hear it.
    assert receivers(sent(r, IDontWant)) == set(mesh) - {mesh[0]} - choked


def test_an_idontwant_that_comes_while_the_entry_is_judged_keeps_it_from_that_peer() -> None:
    # The case IDONTWANT is for: two mesh peers get the entry at about the
    # same time, and each tells the other before either has judged it.
    r = connected(8)
    r.join(TOPIC, 0.0)
    a, b = sorted(r.mesh(TOPIC))[:2]
    r.drain()
    eid, message = entry(1)
    r.handle_entry(a, eid, message, 0.0)
    r.drain()
    r.handle(b, IDontWant((eid,)), 0.01)
    r.validated(eid, Verdict.ACCEPT, 0.02)
    forwarded = receivers(sent(r, EntryMessage))
    assert forwarded == r.mesh(TOPIC) - {a, b}
    assert forwarded


def test_a_peer_that_advertised_an_entry_is_sent_neither_it_nor_gossip_of_it() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    outside = sorted({peer(i) for i in range(1, 9)} - set(mesh))
    assert len(outside) == 2 <= P.d_lazy  # both get gossip at a heartbeat
    source, advertiser = mesh[:2]
    r.drain()
    eid, message = entry(1)
    r.handle_entry(source, eid, message, 0.0)
    r.handle(advertiser, IHave(((TOPIC, (eid,)),)), 0.01)  # while the node judges it
    r.handle(outside[0], IHave(((TOPIC, (eid,)),)), 0.01)
    r.drain()
    r.validated(eid, Verdict.ACCEPT, 0.02)
    assert receivers(sent(r, EntryMessage)) == set(mesh) - {source, advertiser}
    r.heartbeat(1.0)
    assert sent(r, IHave) == [(outside[1], IHave(((TOPIC, (eid,)),)))]


def test_idontwant_is_bounded_per_peer() -> None:
    params = RouterParams(max_dont_send=5, max_idontwant_messages=2)
    r = connected(1, params=params)
    for n in range(4):
        r.handle(peer(1), IDontWant(tuple(bytes([n, k]) * 16 for k in range(4))), 0.0)
    assert r.stats().dont_send == 5
    r.heartbeat(params.dont_send_ttl + 1)
    assert r.stats().dont_send == 0


def test_a_peer_below_the_gossip_threshold_gets_and_gives_no_gossip() -> None:
    r = connected(20)
    r.join(TOPIC, 0.0)
    mesh = r.mesh(TOPIC)
    low = next(p for p in (peer(i) for i in range(1, 21)) if p not in mesh)
    for n in range(2):  # -40: below gossip, not yet graylisted
        eid, message = entry(n)
        r.handle_entry(low, eid, message, 0.0)
        r.validated(eid, Verdict.REJECT, 0.0)
    assert P.graylist_threshold <= r.score(low) < P.gossip_threshold
    source = next(iter(mesh))
    eid = accepted_from(r, source, 10)
    r.drain()
    r.handle(low, IHave(((TOPIC, (entry(11)[0],)),)), 0.1)
    r.handle(low, IWant((eid,)), 0.1)
    assert r.drain() == []
    for t in range(1, 4):
        r.heartbeat(float(t))
        assert low not in receivers(sent(r, IHave))


# --- choking ---------------------------------------------------------------------------


def test_late_deliverers_are_choked_and_the_earliest_d_unchoked_keep_pushing() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    assert len(mesh) == P.d
    choked = choke_by_duplicates(r, mesh, first=mesh[0])
    # The first and the second copy's senders stay; the later ones are choked.
    assert choked == set(mesh[P.d_unchoked :])
    assert r.choked(TOPIC) == choked
    # Each told once: no CHOKE again at a quiet heartbeat.
    r.heartbeat(7.0)
    assert sent(r, Choke) == []


def test_peers_that_delivered_nothing_stay_unchoked() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    eid, message = entry(1)
    for sender in mesh[:4]:
        r.handle_entry(sender, eid, message, 0.5)
    r.validated(eid, Verdict.ACCEPT, 0.5)
    r.drain()
    r.heartbeat(1.0)
    # The earliest d_unchoked stay; the other three that sent copies are choked.
    assert r.choked(TOPIC) == set(mesh[P.d_unchoked : 4])


AUTHOR = b"\x07" * 32
AUTHOR_TOPIC = feed_topic(AUTHOR)


def with_author(*, subscribed: bool = True, params: RouterParams = P) -> Router:
    """A router in AUTHOR_TOPIC with peers 1..8 and AUTHOR itself as a peer
    (subscribed to its topic unless told otherwise); outputs drained."""
    r = connected(8, topics=(AUTHOR_TOPIC,), params=params)
    r.add_peer(AUTHOR, 0.0)
    if subscribed:
        r.handle(AUTHOR, Subscribe((AUTHOR_TOPIC,)), 0.0)
    r.join(AUTHOR_TOPIC, 0.0)
    r.drain()
    return r


def test_followers_of_an_author_they_are_connected_to_choke_every_other_pusher() -> None:
    # The author flood-publishes to every subscriber it is connected to, so
    # no mesh peer can deliver its entries first: from the first heartbeat
    # on, before the topic carried anything, the others only announce.
    author, topic = AUTHOR, AUTHOR_TOPIC
    r = with_author()
    mesh = set(r.mesh(topic))
    r.heartbeat(1.0)
    others = mesh - {author}
    assert r.choked(topic) == others
    assert receivers(sent(r, Choke)) == others
    # The author's entry arrives as before; a choked peer that announces an
    # entry we have not seen is let push again, and choked at the next heartbeat.
    late = sorted(others)[0]
    eid, _ = entry(3)
    r.handle(late, IHave(((topic, (eid,)),)), 1.5)
    assert late not in r.choked(topic)
    r.drain()
    r.heartbeat(2.0)
    assert late in r.choked(topic)
    # Once the author is gone, the usual rule keeps pushers.
    r.remove_peer(author, 2.5)
    r.drain()
    r.heartbeat(3.0)
    assert len(set(r.mesh(topic)) - r.choked(topic)) >= P.d_unchoked


def test_a_peer_choked_twice_in_one_heartbeat_hears_each_topic_once() -> None:
    # Choked by the author rule, it pushes anyway (a copy after the author's),
    # then announces an entry we lack (let push at once); the next heartbeat
    # chokes it anew and would also repeat the CHOKE for its push.
    author, topic = AUTHOR, AUTHOR_TOPIC
    r = with_author()
    r.heartbeat(1.0)
    pusher = sorted(r.choked(topic))[0]
    r.drain()
    eid, message = entry(5, topics=(topic,))
    r.handle_entry(author, eid, message, 1.1)
    r.validated(eid, Verdict.ACCEPT, 1.1)
    r.handle_entry(pusher, eid, message, 1.2)
    r.handle(pusher, IHave(((topic, (entry(6)[0],)),)), 1.3)
    assert pusher not in r.choked(topic)
    r.drain()
    r.heartbeat(2.0)
    chokes = [m for to, m in sent(r, Choke) if to == pusher]
    assert chokes == [Choke((topic,))]
    encode_message(chokes[0])  # a message a peer would accept


def test_the_author_rule_needs_the_author_subscribed_to_its_feed() -> None:
    # It would not publish to us (and no other rule chokes here).
    r = with_author(subscribed=False, params=RouterParams(d_unchoked_cold=0))
    r.heartbeat(1.0)
    assert r.choked(AUTHOR_TOPIC) == set()


def test_before_a_feed_topic_carries_anything_only_a_few_pushers_are_kept() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = set(r.mesh(TOPIC))
    assert len(mesh) > P.d_unchoked_cold
    r.drain()
    r.heartbeat(1.0)
    assert len(mesh - r.choked(TOPIC)) == P.d_unchoked_cold
    assert receivers(sent(r, Choke)) == r.choked(TOPIC)
    # After the first entry, the earliest deliverers are learned as before:
    # a pusher whose copy came late is choked, the choked stay choked.
    pushers = sorted(mesh - r.choked(TOPIC))
    eid, message = entry(1)
    for sender in pushers:
        r.handle_entry(sender, eid, message, 1.5)
    r.validated(eid, Verdict.ACCEPT, 1.5)
    r.drain()
    r.heartbeat(2.0)
    assert mesh - r.choked(TOPIC) == set(pushers[: P.d_unchoked])


def test_a_cold_topic_whose_pushers_left_takes_some_back() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    r.heartbeat(1.0)
    choked = set(r.choked(TOPIC))
    for peer_id in set(r.mesh(TOPIC)) - choked:
        r.remove_peer(peer_id, 1.5)
    r.drain()
    r.heartbeat(2.0)
    unchoked = set(r.mesh(TOPIC)) - r.choked(TOPIC)
    assert len(unchoked) == P.d_unchoked_cold
    # Those that were choked hear UNCHOKE (others are new in the mesh).
    taken_back = unchoked & choked
    assert taken_back
    assert receivers(sent(r, Unchoke)) == taken_back


def test_the_square_keeps_all_its_pushers_until_it_carries_something() -> None:
    r = connected(8, topics=(SQUARE,))
    r.join(SQUARE, 0.0)
    r.drain()
    r.heartbeat(1.0)
    assert r.choked(SQUARE) == set()


def test_choking_can_be_switched_off() -> None:
    r = connected(8, params=RouterParams(choking=False))
    r.join(TOPIC, 0.0)
    assert choke_by_duplicates(r, sorted(r.mesh(TOPIC)), first=peer(1)) == set()


def test_a_peer_that_choked_us_gets_ihave_instead_of_entries() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    a, b, lazy = sorted(r.mesh(TOPIC))[:3]
    r.handle(lazy, Choke((TOPIC,)), 0.1)
    assert r.choked_by(TOPIC) == {lazy}
    eid = accepted_from(r, a, 1, now=0.2)
    forwarded = receivers(sent(r, EntryMessage))
    assert lazy not in forwarded
    assert forwarded == r.mesh(TOPIC) - {a, lazy}
    r.heartbeat(1.0)
    offers = {to: m.offers for to, m in sent(r, IHave)}  # type: ignore[attr-defined]
    assert offers[lazy] == ((TOPIC, (eid,)),)
    # Unchoked, it is pushed to again.
    r.handle(lazy, Unchoke((TOPIC,)), 1.1)
    accepted_from(r, b, 2, now=1.2)
    assert lazy in receivers(sent(r, EntryMessage))


def test_own_entries_are_flood_published_to_peers_that_choked_us() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    lazy = sorted(r.mesh(TOPIC))[0]
    r.handle(lazy, Choke((TOPIC,)), 0.1)
    eid, message = entry(1)
    r.publish(eid, message, 0.2)
    assert lazy in receivers(sent(r, EntryMessage))


def test_choke_from_a_peer_outside_the_mesh_is_ignored() -> None:
    r = connected(10)
    r.join(TOPIC, 0.0)
    outsider = next(p for p in map(peer, range(1, 11)) if p not in r.mesh(TOPIC))
    r.handle(outsider, Choke((TOPIC, OTHER)), 0.1)
    assert r.stats().choked_by == 0


def test_a_choked_peer_that_announces_an_unseen_entry_is_unchoked_at_once() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    choked = choke_by_duplicates(r, mesh, first=mesh[0])
    early = sorted(choked)[0]
    eid, _ = entry(7)
    r.handle(early, IHave(((TOPIC, (eid,)),)), 6.5)
    out = r.drain()
    assert (early, Unchoke((TOPIC,))) in out
    assert (early, IWant((eid,))) in out
    assert early not in r.choked(TOPIC)
    # Announcing what we have already unchokes nobody.
    late = sorted(choked)[1]
    r.handle(late, IHave(((TOPIC, (entry(99)[0],)),)), 6.6)
    assert sent(r, Unchoke) == []
    assert late in r.choked(TOPIC)


def test_leaving_the_mesh_ends_choking_both_ways() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    choked = sorted(choke_by_duplicates(r, mesh, first=mesh[0]))
    r.handle(choked[0], Choke((TOPIC,)), 6.1)
    assert choked[0] in r.choked_by(TOPIC)
    r.handle(choked[0], Prune(TOPIC, 60), 6.2)
    assert choked[0] not in r.choked(TOPIC)
    assert choked[0] not in r.choked_by(TOPIC)
    r.remove_peer(choked[1], 6.3)
    assert choked[1] not in r.choked(TOPIC)
    r.leave(TOPIC, 6.4)
    assert r.stats().choking == r.stats().choked_by == 0


def test_peers_are_unchoked_when_too_few_push_to_us() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    choked = choke_by_duplicates(r, mesh, first=mesh[0])
    for pusher in mesh[: P.d_unchoked]:
        r.remove_peer(pusher, 6.5)
    r.heartbeat(7.0)
    # The mesh was repaired from the two peers outside it, who push: enough.
    unchoked = r.mesh(TOPIC) - r.choked(TOPIC)
    assert len(unchoked) >= P.d_unchoked
    r2 = connected(P.d)
    r2.join(TOPIC, 0.0)
    mesh2 = sorted(r2.mesh(TOPIC))
    choked2 = choke_by_duplicates(r2, mesh2, first=mesh2[0])
    assert choked2
    r2.remove_peer(mesh2[0], 6.5)
    r2.heartbeat(7.0)
    # No peer left to graft: one that was choked is asked to push again.
    assert len(r2.mesh(TOPIC) - r2.choked(TOPIC)) == P.d_unchoked
    assert [to for to, _ in sent(r2, Unchoke)] != []
    assert choked


def test_a_peer_that_pushes_though_choked_is_told_again_its_own_entries_excepted() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    mesh = sorted(r.mesh(TOPIC))
    late = sorted(choke_by_duplicates(r, mesh, first=mesh[0]))[0]
    eid = accepted_from(r, mesh[0], 3, now=6.1)
    r.handle_entry(late, eid, entry(3)[1], 6.2)  # a duplicate pushed though choked
    r.drain()
    r.heartbeat(7.0)
    assert (late, Choke((TOPIC,))) in r.drain()
    own_topic = feed_topic(late)
    r.join(own_topic, 7.1)
    r.handle(late, Subscribe((own_topic,)), 7.1)
    own = EntryMessage((TOPIC, own_topic), RawEntry(b"own", b"s" * 64, b""))
    own_id = b"\x42" * 32
    r.handle_entry(mesh[0], own_id, own, 7.2)
    r.handle_entry(late, own_id, own, 7.2)
    r.drain()
    r.heartbeat(8.0)
    assert not any(to == late and TOPIC in m.topics for to, m in sent(r, Choke))  # type: ignore[attr-defined]


def test_floods_of_choke_and_unchoke_are_penalised() -> None:
    r = connected(8)
    r.join(TOPIC, 0.0)
    noisy = sorted(r.mesh(TOPIC))[0]
    for n in range(P.max_choke_messages):
        r.handle(noisy, (Choke if n % 2 else Unchoke)((TOPIC,)), 0.1)
    assert r.score(noisy) == 0.0
    for _ in range(5):
        r.handle(noisy, Choke((TOPIC,)), 0.1)
    assert r.score(noisy) < 0.0


def test_one_ihave_per_peer_and_heartbeat_whatever_the_topics() -> None:
    topics = tuple(feed_topic(bytes([n]) * 32) for n in range(1, 9))
    r = connected(30, topics=topics)
    for topic in topics:
        r.join(topic, 0.0)
    for n, topic in enumerate(topics):
        source = sorted(r.mesh(topic))[0]
        eid, message = entry(n, topics=(topic,))
        r.handle_entry(source, eid, message, 0.1)
        r.validated(eid, Verdict.ACCEPT, 0.1)
    r.deliveries()
    r.drain()
    r.heartbeat(1.0)
    ihaves = sent(r, IHave)
    targets = [to for to, _ in ihaves]
    assert len(targets) == len(set(targets))
    # Each topic reached d_lazy peers outside its mesh: fewer messages than that
    # for every topic on its own, since each heartbeat draws one peer order.
    reached = {topic: 0 for topic in topics}
    for _, message in ihaves:
        for topic, _ in message.offers:  # type: ignore[attr-defined]
            reached[topic] += 1
    assert all(count >= P.d_lazy for count in reached.values())
    assert len(ihaves) < len(topics) * P.d_lazy


# --- gossip emission and caches ------------------------------------------------------


def test_heartbeat_gossips_recent_ids_to_d_lazy_peers_outside_the_mesh() -> None:
    r = connected(20)
    r.join(TOPIC, 0.0)
    mesh = r.mesh(TOPIC)
    source = next(iter(mesh))
    ids = [accepted_from(r, source, n) for n in range(3)]
    r.drain()
    r.heartbeat(1.0)
    ihaves = sent(r, IHave)
    assert len(ihaves) == P.d_lazy
    assert receivers(ihaves).isdisjoint(mesh)
    assert all(m.offers == ((TOPIC, tuple(ids)),) for _, m in ihaves)  # type: ignore[union-attr]
    for t in range(2, 2 + P.mcache_gossip - 1):
        r.heartbeat(float(t))
        assert len(sent(r, IHave)) == P.d_lazy
    r.heartbeat(float(2 + P.mcache_gossip))  # out of the gossip windows
    assert sent(r, IHave) == []


def test_gossip_advertises_at_most_max_ihave_ids() -> None:
    params = RouterParams(max_ihave_ids=5)
    r = connected(10, params=params)
    r.join(TOPIC, 0.0)
    source = next(iter(r.mesh(TOPIC)))
    for n in range(12):
        accepted_from(r, source, n)
    r.drain()
    r.heartbeat(1.0)
    ihaves = sent(r, IHave)
    assert ihaves
    assert all(len(m.offers[0][1]) == 5 for _, m in ihaves)  # type: ignore[union-attr]


def test_caches_expire() -> None:
    params = RouterParams(seen_ttl=10.0, validation_timeout=5.0)
    r = connected(3, params=params)
    r.join(TOPIC, 0.0)
    eid = accepted_from(r, peer(1), 1)
    late_id, late = entry(2)
    r.handle_entry(peer(1), late_id, late, 0.0)  # never judged
    r.deliveries()
    r.handle(peer(2), IHave(((TOPIC, (entry(3)[0],)),)), 0.0)
    assert r.stats().cached == 1
    assert r.stats().pending == 1
    r.drain()
    for t in range(1, params.mcache_len + 1):
        r.heartbeat(float(t))
    # The message cache keeps mcache_len windows: gone from IWANT answers.
    r.handle(peer(3), IWant((eid,)), 5.5)
    assert sent(r, EntryMessage) == []
    stats = r.stats()
    assert (stats.cached, stats.pending, stats.promises, stats.asked) == (0, 0, 0, 0)
    assert stats.seen == 1
    r.validated(late_id, Verdict.ACCEPT, 6.0)  # too late: ignored
    assert r.drain() == []
    for t in range(6, 12):
        r.heartbeat(float(t))
    assert r.stats().seen == 0
    # Past the seen TTL the id is news again.
    r.handle_entry(peer(2), *entry(1), 12.0)
    assert len(r.deliveries()) == 1


def test_seen_and_pending_are_bounded() -> None:
    params = RouterParams(seen_max=10, max_pending=4)
    r = connected(1, params=params)
    r.join(TOPIC, 0.0)
    for n in range(30):
        accepted_from(r, peer(1), n)
    assert r.stats().seen == 10
    for n in range(100, 110):
        r.handle_entry(peer(1), *entry(n), 0.0)
    assert len(r.deliveries()) == 4
    assert r.stats().pending == 4


def test_peer_subscriptions_are_bounded() -> None:
    params = RouterParams(max_peer_topics=5)
    r = router(params)
    r.add_peer(peer(1), 0.0)
    topics = tuple(feed_topic(bytes([n]) * 32) for n in range(8))
    r.handle(peer(1), Subscribe(topics), 0.0)
    r.handle(peer(1), Subscribe(topics), 0.0)
    assert r.stats().peer_topics == 5


def test_removing_a_peer_drops_its_queued_messages_and_mesh_places() -> None:
    r = connected(6)
    r.join(TOPIC, 0.0)
    p = next(iter(r.mesh(TOPIC)))
    r.remove_peer(p, 0.0)
    assert p not in receivers(r.drain())
    assert p not in r.mesh(TOPIC)


def test_a_departed_peer_keeps_its_score_for_a_while() -> None:
    params = RouterParams(retain_score=100.0)
    r = connected(2, params=params)
    r.join(TOPIC, 0.0)
    eid, message = entry(1)
    r.handle_entry(peer(1), eid, message, 0.0)
    r.remove_peer(peer(1), 0.0)
    r.validated(eid, Verdict.REJECT, 0.0)  # a late verdict still counts
    r.add_peer(peer(1), 1.0)
    assert r.score(peer(1)) < 0
    r.remove_peer(peer(1), 2.0)
    r.heartbeat(200.0)
    r.add_peer(peer(1), 201.0)
    assert r.score(peer(1)) == 0


def test_retained_scores_are_bounded() -> None:
    r = connected(3, params=RouterParams(max_retained=1))
    r.join(TOPIC, 0.0)
    for i in (1, 2):
        accepted_from(r, peer(i), i)
        r.remove_peer(peer(i), 0.0)
    assert r.stats().retained == 1
    r.add_peer(peer(2), 0.0)  # the latest is kept
    assert r.score(peer(2)) > 0


# --- a simulated network -----------------------------------------------------------


def run_simulation(net: SimNet, entries: int = 40) -> None:
    """Let the meshes form, publish from random nodes for 10 s, then settle."""
    net.run(5.0)
    for k in range(entries):
        net.publish(net.rng.randrange(len(net.routers)), 5.0 + 10.0 * k / entries)
    net.run(25.0)


def test_simulation_delivers_every_entry_to_every_subscriber() -> None:
    net = SimNet(60, seed=1)
    run_simulation(net)
    report = net.report()
    assert report.delivery_ratio == 1.0
    # Eager push: each node gets a copy from most of its ~D mesh peers.
    assert 1.0 <= report.redundancy <= P.d
    assert report.disconnects == 0
    assert max(report.latencies) < 0.5  # the mesh alone, no gossip round trip
    for i, r in enumerate(net.routers):
        assert min(P.d_low, net.degree(i)) <= len(r.mesh(SQUARE)) <= P.d_high
    assert statistics.mean(len(r.mesh(SQUARE)) for r in net.routers) <= P.d + 1


def test_simulation_with_lossy_links_recovers_through_gossip() -> None:
    # A third of the links lose a third of the entries. What the mesh loses
    # comes back through IHAVE/IWANT from peers outside the mesh. (A node
    # whose every peer is a mesh peer hears no gossip: with heavier loss it
    # can miss an entry, which sync then fetches.)
    net = SimNet(60, seed=2, lossy_links=0.3, loss=0.3)
    run_simulation(net)
    report = net.report()
    assert report.delivery_ratio == 1.0
    assert report.disconnects == 0
    assert net.via_iwant > 0
    assert max(report.latencies) < 3 * P.heartbeat_interval


def test_simulation_idontwant_saves_copies_when_validation_is_slow() -> None:
    # IDONTWANT helps when the validation delay is comparable to link latency.
    def redundancy(idontwant_min_size: int) -> float:
        # Without choking, which saves the copies that IDONTWANT is racing for.
        params = RouterParams(idontwant_min_size=idontwant_min_size, choking=False)
        net = SimNet(40, seed=3, params=params, validation_delay=0.03)
        run_simulation(net, entries=20)
        report = net.report()
        assert report.delivery_ratio == 1.0
        return report.redundancy

    assert redundancy(0) < redundancy(10**6) - 0.5


def test_simulation_choking_cuts_copies_and_still_delivers_everything() -> None:
    def run(choking: bool) -> tuple[float, float]:
        net = SimNet(60, seed=5, params=RouterParams(choking=choking))
        run_simulation(net, entries=60)
        report = net.report()
        assert report.delivery_ratio == 1.0
        assert report.disconnects == 0
        return report.redundancy, max(report.latencies)

    redundancy, latest = run(True)
    unchoked, _ = run(False)
    assert redundancy < unchoked / 2
    assert latest < 3 * P.heartbeat_interval


def test_simulation_cuts_off_a_forger_and_delivers_the_rest() -> None:
    net = SimNet(40, seed=4)
    forger = 0
    neighbours = {j for i, j in net.links if i == forger}
    net.run(5.0)
    forged = [net.publish(forger, 5.0 + k / 2, forged=True) for k in range(10)]
    for k in range(20):
        net.publish(net.rng.randrange(1, 40), 5.0 + k / 2)
    net.run(25.0)
    # Flood publish reaches the forger's neighbours, who never pass it on.
    assert {i for i, eid in net.delivered if eid in forged} <= neighbours
    assert {(i, j) for i, j, _ in net.disconnects} == {(i, forger) for i in neighbours}
    assert all("invalid" in reason or "graylisted" in reason for *_, reason in net.disconnects)
    report = net.report(exclude=frozenset({forger}))
    assert report.delivery_ratio == 1.0


# --- a hostile peer --------------------------------------------------------------------

SMALL = RouterParams(
    max_pending=4,
    seen_max=8,
    mcache_window_max=4,
    max_peer_topics=4,
    max_dont_send=4,
    max_retained=2,
    max_iwant_ids=8,
    max_ihave_messages=3,
    max_idontwant_messages=3,
    idontwant_min_size=4,
)
HOSTILE = peer(66)
HONEST = (peer(1), peer(2), peer(3))
TOPICS = (TOPIC, OTHER, SQUARE, feed_topic(b"\xcc" * 32))

id_pool = st.sampled_from([n.to_bytes(32, "big") for n in range(12)])
id_tuples = st.lists(id_pool, min_size=1, max_size=6).map(tuple)
topic_st = st.sampled_from(TOPICS)
topic_tuples = st.lists(topic_st, min_size=1, max_size=3, unique=True).map(tuple)
raw_entries = st.builds(
    RawEntry, st.sampled_from([b"h1", b"h2"]), st.just(b"s" * 64), st.binary(max_size=8)
)
control_messages = st.one_of(
    st.builds(Subscribe, topic_tuples),
    st.builds(Unsubscribe, topic_tuples),
    st.builds(Graft, topic_st),
    st.builds(Prune, topic_st, st.integers(0, 3600)),
    st.builds(
        IHave,
        st.lists(st.tuples(topic_st, id_tuples), min_size=1, max_size=3).map(tuple),
    ),
    st.builds(IWant, id_tuples),
    st.builds(IDontWant, id_tuples),
    st.builds(Choke, topic_tuples),
    st.builds(Unchoke, topic_tuples),
)


class HostilePeer(RuleBasedStateMachine):
    """One peer sends anything in any order; honest peers and the node go on.
    Nothing may escape, outputs go to connected peers, and state stays bounded."""

    @initialize()
    def setup(self) -> None:
        self.router = Router(ME, SMALL, random.Random(0))
        self.now = 0.0
        self.connected: set[bytes] = set()
        self.pending: list[bytes] = []
        for p in (*HONEST, HOSTILE):
            self.router.add_peer(p, self.now)
            self.connected.add(p)
        for p in HONEST:
            self.router.handle(p, Subscribe((TOPIC, SQUARE)), self.now)
        self.router.join(TOPIC, self.now)
        self.router.join(SQUARE, self.now)
        self.check_outputs()

    def check_outputs(self) -> None:
        assert receivers(self.router.drain()) <= self.connected
        self.pending += [d.entry_id for d in self.router.deliveries()]
        for p, reason in self.router.disconnects():
            assert p in self.connected
            assert reason
            self.router.remove_peer(p, self.now)  # as the driver would
            self.connected.discard(p)

    @precondition(lambda self: HOSTILE in self.connected)
    @rule(message=control_messages, dt=st.floats(0, 0.5))
    def hostile_control(self, message: WireMessage, dt: float) -> None:
        self.now += dt
        self.router.handle(HOSTILE, message, self.now)  # type: ignore[arg-type]
        self.check_outputs()

    @precondition(lambda self: HOSTILE in self.connected)
    @rule(eid=id_pool, topics=topic_tuples, raw=raw_entries)
    def hostile_entry(self, eid: bytes, topics: tuple[str, ...], raw: RawEntry) -> None:
        self.router.handle_entry(HOSTILE, eid, EntryMessage(topics, raw), self.now)
        self.check_outputs()

    @precondition(lambda self: self.connected & set(HONEST))
    @rule(data=st.data(), eid=id_pool, raw=raw_entries)
    def honest_entry(self, data: st.DataObject, eid: bytes, raw: RawEntry) -> None:
        # Random verdicts may get an honest peer disconnected too.
        source = data.draw(st.sampled_from(sorted(self.connected & set(HONEST))))
        self.router.handle_entry(source, eid, EntryMessage((TOPIC,), raw), self.now)
        self.check_outputs()

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), verdict=st.sampled_from(Verdict))
    def judge(self, data: st.DataObject, verdict: Verdict) -> None:
        eid = data.draw(st.sampled_from(self.pending))
        self.pending.remove(eid)
        self.router.validated(eid, verdict, self.now)
        self.check_outputs()

    @rule(eid=id_pool)
    def publish(self, eid: bytes) -> None:
        self.router.publish(
            eid, EntryMessage((SQUARE,), RawEntry(b"own", b"s" * 64, b"")), self.now
        )
        self.check_outputs()

    @rule(topic=topic_st, join=st.booleans())
    def join_or_leave(self, topic: str, join: bool) -> None:
        (self.router.join if join else self.router.leave)(topic, self.now)
        self.check_outputs()

    @rule(dt=st.floats(1.0, 5.0))
    def heartbeat(self, dt: float) -> None:
        self.now += dt
        self.router.heartbeat(self.now)
        self.check_outputs()

    @rule()
    def hostile_reconnects(self) -> None:
        if HOSTILE in self.connected:
            self.router.remove_peer(HOSTILE, self.now)
            self.connected.discard(HOSTILE)
        else:
            self.router.add_peer(HOSTILE, self.now)
            self.connected.add(HOSTILE)
        self.check_outputs()

    @invariant()
    def state_is_bounded(self) -> None:
        stats = self.router.stats()
        peers = len(self.connected)
        assert stats.peers == peers
        assert stats.pending <= SMALL.max_pending
        assert stats.seen <= SMALL.seen_max
        assert stats.cached <= SMALL.mcache_len * SMALL.mcache_window_max
        assert stats.peer_topics <= peers * SMALL.max_peer_topics
        assert stats.dont_send <= peers * SMALL.max_dont_send
        assert stats.retained <= SMALL.max_retained
        # IWANT bookkeeping lives at most a follow-up time (heartbeats >= 1 s apart).
        rounds = math.ceil(SMALL.iwant_followup_time / SMALL.heartbeat_interval) + 1
        assert stats.promises <= peers * SMALL.max_ihave_messages * rounds
        assert stats.asked <= peers * SMALL.max_iwant_ids * rounds
        assert stats.backoffs <= (len(HONEST) + 1) * len(TOPICS)
        assert stats.choking <= stats.mesh_links
        assert stats.choked_by <= stats.mesh_links
        for topic in self.router.joined:
            mesh = self.router.mesh(topic)
            assert mesh <= self.connected
            assert self.router.choked(topic) <= mesh
            assert self.router.choked_by(topic) <= mesh


TestHostilePeer = HostilePeer.TestCase


def test_a_peer_that_joins_the_mesh_is_offered_what_went_round_before() -> None:
    # Mesh peers get forwards and no gossip: one grafted after an entry was
    # forwarded would never hear of it without this IHAVE.
    r = router()
    r.join(TOPIC, 0.0)  # nobody to graft yet
    for i in (1, 2):
        r.add_peer(peer(i), 0.0)
        r.handle(peer(i), Subscribe((TOPIC,)), 0.0)
    entry_id = accepted_from(r, peer(1), 7)
    assert sent(r, EntryMessage) == []  # the mesh is empty: forwarded to nobody
    r.heartbeat(1.0)
    assert r.mesh(TOPIC) == {peer(1), peer(2)}
    ihaves = sent(r, IHave)
    assert ihaves == [(peer(2), IHave(((TOPIC, (entry_id,)),)))]  # not to its source
    r.heartbeat(2.0)
    assert sent(r, IHave) == []  # offered once


# --- floods and returning offenders (issue 6) ---------------------------------------


def _until_disconnected(r: Router, message: WireMessage, now: float, limit: int) -> int:
    """Send ``message`` from peer 1 until the router hangs up; how many it took."""
    for count in range(1, limit + 1):
        r.handle(peer(1), message, now)  # type: ignore[arg-type]
        if [p for p, _ in r.disconnects()] == [peer(1)]:
            return count
    raise AssertionError(f"still connected after {limit} messages")


def test_iwants_past_the_budget_are_a_flood_even_when_no_longer_answered() -> None:
    # Regression: below gossip_threshold IWANTs went unanswered and unscored,
    # so a peer could ask without end once its score had fallen to -20.
    params = RouterParams(max_iwant_heeded=8)
    r = connected(1, params=params)
    unknown = tuple(bytes([7, n]) + bytes(30) for n in range(4))
    for second in range(5):  # within the budget at every heartbeat: no cost
        r.handle(peer(1), IWant(unknown), second + 0.1)
        r.handle(peer(1), IWant(unknown), second + 0.2)
        r.heartbeat(second + 1.0)
    assert r.score(peer(1)) == 0
    assert _until_disconnected(r, IWant(unknown), 5.5, limit=50) < 20


def test_grafts_repeated_within_a_heartbeat_are_a_flood() -> None:
    # Regression: GRAFTs from a peer already in the mesh were ignored at no
    # cost, however many came.
    r = connected(1)
    r.join(TOPIC, 0.0)
    assert r.mesh(TOPIC) == {peer(1)}
    for second in range(3):  # as many as a correct peer sends: no cost
        for _ in range(P.max_grafts_per_topic):
            r.handle(peer(1), Graft(TOPIC), second + 0.5)
        r.heartbeat(second + 1.0)
    assert r.score(peer(1)) == 0
    assert r.mesh(TOPIC) == {peer(1)}
    assert _until_disconnected(r, Graft(TOPIC), 3.5, limit=50) < 20


def test_forgeries_from_many_peers_do_not_make_us_an_iwant_flooder() -> None:
    # Regression: for each rejected entry we asked the mesh peers told
    # IDONTWANT for a genuine copy, without bound. Sybils that sent a few
    # forgeries each made our honest neighbour cut us off for flooding IWANTs.
    us = router(RouterParams(idontwant_min_size=0))
    neighbour = Router(peer(1), P, random.Random(1))
    us.add_peer(peer(1), 0.0)
    us.handle(peer(1), Subscribe((TOPIC,)), 0.0)
    neighbour.add_peer(ME, 0.0)
    neighbour.handle(ME, Subscribe((TOPIC,)), 0.0)
    us.join(TOPIC, 0.0)
    neighbour.join(TOPIC, 0.0)
    assert us.mesh(TOPIC) == {peer(1)}
    neighbour.drain()
    asked = 0
    for sybil in range(100, 100 + P.max_iwant_heeded):
        us.add_peer(peer(sybil), 0.5)
        for n in range(2):  # too few to be cut off
            eid, message = entry(10 * sybil + n)
            us.handle_entry(peer(sybil), eid, message, 0.5)
            us.validated(eid, Verdict.REJECT, 0.5)
        for to, sent_message in us.drain():
            if to == peer(1):
                asked += isinstance(sent_message, IWant)
                neighbour.handle(ME, sent_message, 0.5)  # type: ignore[arg-type]
    assert asked == P.max_iwant_ids
    assert neighbour.disconnects() == []
    assert neighbour.score(ME) == 0


def test_a_peer_dropped_for_its_score_is_refused_when_it_comes_back() -> None:
    r = connected(1)
    r.join(TOPIC, 0.0)
    for n in range(1, 10):
        eid, message = entry(n)
        r.handle_entry(peer(1), eid, message, 0.0)
        r.validated(eid, Verdict.REJECT, 0.0)
        if r.disconnects():
            break
    r.remove_peer(peer(1), 0.0)
    r.drain()
    r.add_peer(peer(1), 1.0)
    assert [p for p, _ in r.disconnects()] == [peer(1)]
    assert sent(r) == []  # told nothing, not even our topics
    r.handle(peer(1), Graft(TOPIC), 1.0)
    assert r.mesh(TOPIC) == frozenset()
    r.remove_peer(peer(1), 1.0)
    for second in range(2, 400):  # the score decays: welcome again
        r.heartbeat(float(second))
    r.add_peer(peer(1), 400.0)
    assert r.disconnects() == []
    assert sent(r, Subscribe) == [(peer(1), Subscribe((TOPIC,)))]
