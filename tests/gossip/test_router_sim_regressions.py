"""Router behaviours that the network simulator (``bench/simulate.py``) found wrong.

Each test is the smallest exchange that shows one; the simulator's figures
that led to it are in ``docs/scaling.md``.
"""

from __future__ import annotations

import random

from gossip.router import Router, RouterParams
from gossip.wire import Graft, Prune, Subscribe, feed_topic

ME = b"\x00" * 32
PEER = b"\x01" * 32
TOPICS = tuple(feed_topic(bytes([n]) * 32) for n in range(2, 8))
P = RouterParams()


def test_a_restarted_peer_grafting_during_an_earlier_connections_backoff_stays() -> None:
    """A node that restarts forgets the PRUNEs it was sent. Its GRAFTs during
    the backoff it can no longer know are refused (pruned again, so it learns
    the backoff), not scored as misbehaviour: with a handful of topics that
    score disconnected it at once, and kept it out for ``retain_score``
    seconds. In the simulator's churn runs every node that came back within
    a minute of a PRUNE lost peers this way."""
    r = Router(ME, P, random.Random(0))
    for topic in TOPICS:
        r.join(topic, 0.0)
    r.add_peer(PEER, 0.0)
    r.handle(PEER, Subscribe(TOPICS), 0.0)
    # The peer leaves our meshes (its node unsubscribed them, or pruned us
    # from an over-full mesh): we back off from it for prune_backoff seconds.
    for topic in TOPICS:
        r.handle(PEER, Graft(topic), 1.0)
        r.handle(PEER, Prune(topic, P.prune_backoff), 2.0)
    r.drain()
    # Its node restarts and reconnects within the backoff, and grafts.
    r.remove_peer(PEER, 5.0)
    r.add_peer(PEER, 6.0)
    r.handle(PEER, Subscribe(TOPICS), 6.0)
    r.drain()
    for topic in TOPICS:
        r.handle(PEER, Graft(topic), 7.0)
    assert r.disconnects() == []
    assert r.score(PEER) >= 0.0
    refused = [m for _, m in r.drain() if isinstance(m, Prune)]
    assert {m.topic for m in refused} == set(TOPICS)
    assert all(m.backoff == P.prune_backoff for m in refused)
    assert all(PEER not in r.mesh(topic) for topic in TOPICS)


def test_grafting_again_after_a_prune_on_the_same_connection_is_still_penalised() -> None:
    r = Router(ME, P, random.Random(0))
    for topic in TOPICS:
        r.join(topic, 0.0)
    r.add_peer(PEER, 0.0)
    r.handle(PEER, Subscribe(TOPICS), 0.0)
    for topic in TOPICS:
        r.handle(PEER, Graft(topic), 1.0)
        r.handle(PEER, Prune(topic, P.prune_backoff), 2.0)
    r.remove_peer(PEER, 5.0)
    r.add_peer(PEER, 6.0)
    r.handle(PEER, Subscribe(TOPICS), 6.0)
    topic = TOPICS[0]
    r.handle(PEER, Graft(topic), 7.0)  # refused: it learns the backoff now
    r.heartbeat(8.0)
    r.handle(PEER, Graft(topic), 9.0)  # told, and grafts anyway
    assert r.score(PEER) < 0.0
    assert PEER not in r.mesh(topic)
