"""Churn and partitions with real nodes on loopback: nodes restarted at random,
a swarm cut in two and healed, a swarm that lost its seed. Every follower
ends up with every entry of the feeds it follows. (``bench/churn.py`` runs
the same at full size and prints the times.)"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
import trio

from gossip.wire import feed_topic
from node.local import LocalNode
from node.runtime import Node, NodeOptions
from node.testing import Swarm, open_swarm

#: The connection manager runs every second: the tests wait less for it.
OPTIONS = replace(NodeOptions(), maintain_interval=1.0, control=False)


class _Feeds:
    """Who follows whom in a swarm, and the last seq each node posted."""

    def __init__(self, swarm: Swarm, follows: int, seed: int) -> None:
        rng = random.Random(seed)
        count = len(swarm.nodes)
        self.swarm = swarm
        self.rng = rng
        self.follows = {
            i: rng.sample([j for j in range(count) if j != i], follows) for i in range(count)
        }
        self.posted: dict[int, int] = {}

    async def follow_all(self) -> None:
        nodes = self.swarm.nodes
        for index, others in self.follows.items():
            for other in others:
                await nodes[index].follow(nodes[other].me)

    async def post(self, index: int, text: str) -> None:
        entry = await self.swarm.nodes[index].post(text)
        self.posted[index] = entry.seq

    async def post_all(self, text: str) -> None:
        for index in self.swarm.running():
            await self.post(index, text)

    def heads(self, index: int) -> dict[bytes, int]:
        nodes = self.swarm.nodes
        return {nodes[j].me: self.posted[j] for j in self.follows[index] if j in self.posted}

    async def converge(self, indices: Sequence[int], patience: float) -> None:
        """Every node of ``indices`` holds every feed it follows up to its last post."""
        async with trio.open_nursery() as nursery:
            for index in indices:
                nursery.start_soon(self._converge_one, index, patience)

    async def _converge_one(self, index: int, patience: float) -> None:
        await self.swarm.wait_for_heads(index, self.heads(index), timeout=patience)


def _across(swarm: Swarm, left: set[int], right: set[int]) -> int:
    identities = {swarm.nodes[i].me for i in right}
    return sum(peer.identity in identities for i in left for peer in swarm.nodes[i].peers())


async def _until(meshes_formed: Callable[[], object]) -> None:
    """Wait until ``meshes_formed()`` holds (the caller's deadline bounds it).
    The router has no event for its meshes: look each heartbeat."""
    while True:
        if meshes_formed():
            return
        await trio.sleep(OPTIONS.router.heartbeat_interval)


async def _meshed_without(author: Node, first: Node, second: Node) -> None:
    """``first`` and ``second`` follow ``author`` and mesh its feed's topic with
    each other, while the test keeps the author out of their reach."""
    assert await first.dial(*second.listen_address)
    await first.follow(author.me)
    await second.follow(author.me)
    topic = feed_topic(author.me)
    await _until(lambda: second.me in first.router.mesh(topic) and second.router.mesh(topic))


async def _dht_is_cut(swarm: Swarm, index: int, far: int) -> None:
    """The DHTs of nodes ``index`` and ``far`` do not reach each other: each
    pings the other at once, both drop what comes, and both bootstraps find
    nobody (after rpcudp's 5 s timeout)."""
    one, other = swarm.nodes[index], swarm.nodes[far]
    found: dict[int, int] = {}

    async def bootstrap(node: Node, to: Node) -> None:
        found[index if node is one else far] = await node._discovery.bootstrap([to.status().dht])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bootstrap, one, other)
        nursery.start_soon(bootstrap, other, one)
    assert found == {index: 0, far: 0}
    for node in (one, other):
        counters = (await node._discovery.stats()).counters
        assert counters.get("dropped: test partition", 0) >= 1


@pytest.mark.trio
async def test_followers_converge_while_nodes_restart_at_random() -> None:
    count = 10
    with trio.fail_after(60):
        async with open_swarm(count, options=OPTIONS) as swarm:
            feeds = _Feeds(swarm, follows=4, seed=11)
            await feeds.follow_all()
            await feeds.post_all("before")
            await feeds.converge(range(count), patience=30)
            seed = swarm.nodes[0].listen_address
            busy = {i: trio.Lock() for i in range(count)}

            async def restart(index: int, delay: float) -> None:
                await trio.sleep(delay)
                async with busy[index]:
                    await swarm.stop(index)
                await trio.sleep(1.0)  # down while the others post
                await swarm.start(index, replace(swarm.options, bootstrap=(seed,)))

            async with trio.open_nursery() as nursery:
                for n, index in enumerate(feeds.rng.sample(range(1, count), 3)):
                    nursery.start_soon(restart, index, 0.5 + n)
                for n in range(20):
                    await trio.sleep(0.2)
                    index = feeds.rng.choice(swarm.running())
                    async with busy[index]:
                        if index in swarm.running():
                            await feeds.post(index, f"during {n}")
            assert swarm.running() == list(range(count))
            await feeds.converge(range(count), patience=40)


@pytest.mark.trio
async def test_a_swarm_cut_in_two_converges_once_healed() -> None:
    count = 10
    with trio.fail_after(60):
        async with open_swarm(count, options=OPTIONS) as swarm:
            feeds = _Feeds(swarm, follows=4, seed=12)
            await feeds.follow_all()
            await feeds.post_all("before")
            await feeds.converge(range(count), patience=30)
            left, right = set(range(0, count, 2)), set(range(1, count, 2))
            assert _across(swarm, left, right) > 0
            await swarm.partition([left, right])
            assert _across(swarm, left, right) == 0
            a, b = swarm.nodes[0], swarm.nodes[1]
            # Dials across the cut fail, by address or by identity.
            assert not await a.dial(*b.listen_address)
            assert not await a.dial(*b.listen_address, b.me)
            before = dict(feeds.posted)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_dht_is_cut, swarm, 0, 1)
                for n in range(10):
                    await feeds.post_all(f"cut {n}")
                    await trio.sleep(1.0)
            assert _across(swarm, left, right) == 0
            # Each side converged on its own feeds meanwhile, and nothing
            # posted during the cut crossed it.
            nodes = swarm.nodes
            for index in range(count):
                ours = [j for j in feeds.follows[index] if (j in left) == (index in left)]
                theirs = [j for j in feeds.follows[index] if j not in ours]
                await swarm.wait_for_heads(
                    index, {nodes[j].me: feeds.posted[j] for j in ours}, timeout=20
                )
                held = await nodes[index].call_store(
                    lambda i=index, js=theirs: [nodes[i].store.latest_seq(nodes[j].me) for j in js]
                )
                assert held == [before[j] for j in theirs]
            await swarm.heal()
            await feeds.converge(range(count), patience=40)
            assert _across(swarm, left, right) > 0
            assert await a._discovery.bootstrap([b.status().dht]) >= 1


@pytest.mark.trio
async def test_without_its_seed_the_swarm_goes_on_and_a_restarted_node_rejoins() -> None:
    with trio.fail_after(60):
        async with open_swarm(10, options=OPTIONS) as swarm:
            feeds = _Feeds(swarm, follows=4, seed=13)
            await feeds.follow_all()
            await feeds.post_all("before")
            await feeds.converge(range(10), patience=30)
            await swarm.stop(0)  # the only seed
            for n in range(3):
                await feeds.post_all(f"no seed {n}")
            await feeds.converge(swarm.running(), patience=30)
            rejoining = 7
            await swarm.stop(rejoining)
            for n in range(3):
                await feeds.post_all(f"while 7 is away {n}")
            node = await swarm.start(rejoining)  # no seed: address book and DHT only
            assert node.options.bootstrap == ()
            await feeds.converge([rejoining], patience=30)
            assert node.peers()
            # And what it posts on its return reaches its followers.
            await feeds.post(rejoining, "back")
            followers = [i for i in swarm.running() if rejoining in feeds.follows[i]]
            assert followers
            await feeds.converge(followers, patience=30)


# --- regressions ------------------------------------------------------------------------


@pytest.mark.trio
async def test_entries_a_peer_synced_after_the_heads_exchange_reach_a_follower() -> None:
    # The follower reaches the author only through the relay. It follows the
    # author, then the relay does and syncs the author's log, which the
    # author wrote offline: no gossip carries those entries. Before peers
    # told each other their heads as they moved, the follower got them only
    # with its next connection to the relay.
    with trio.fail_after(40):
        async with open_swarm(3, options=OPTIONS) as swarm:
            relay, _, follower = swarm.nodes
            await follower.set_test_reachable(lambda peer: peer != swarm.nodes[1].me)
            await swarm.stop(1)
            with LocalNode.open(swarm.home(1)) as local:
                for n in range(3):
                    last = local.post(f"written offline {n}")
            author = await swarm.start(
                1, replace(swarm.options, bootstrap=(relay.listen_address,))
            )
            await swarm.wait_for_peer(1, relay.me)
            await follower.follow(author.me)
            await relay.follow(author.me)
            await swarm.wait_for_seq(0, author.me, last.seq, timeout=20)
            await swarm.wait_for_seq(2, author.me, last.seq, timeout=20)
            assert all(peer.identity != author.me for peer in follower.peers())


@pytest.mark.trio
async def test_an_author_whose_followers_mesh_only_with_each_other_dials_them() -> None:
    # The followers found each other while the author was out of reach, and
    # have as many sessions as their connection managers allow; none dials
    # the author again (their meshes of its feed are not empty). Before, the
    # author did not look for its followers either, and what it posted
    # reached nobody.
    options = replace(OPTIONS, target_peers=1)
    with trio.fail_after(40):
        async with open_swarm(4, options=options) as swarm:
            author, first, second = swarm.nodes[1], swarm.nodes[2], swarm.nodes[3]
            for follower in (first, second):
                await follower.set_test_reachable(lambda peer: peer != author.me)
            await _meshed_without(author, first, second)
            for follower in (first, second):
                await follower.set_test_reachable(None)
            entry = await author.post("anyone there?")
            await swarm.wait_for_entry(2, entry.id, timeout=30)
            await swarm.wait_for_entry(3, entry.id, timeout=30)


@pytest.mark.trio
async def test_an_author_that_could_not_reach_its_followers_looks_for_them_again() -> None:
    # The author posts while it cannot reach its followers (asleep, say): its
    # lookup finds them, its dials fail. Before, one lookup was all it made
    # after a post, and the followers, meshed with each other, had no reason
    # to dial it: the post reached nobody until the author posted again.
    options = replace(OPTIONS, target_peers=1)
    with trio.fail_after(60):
        async with open_swarm(4, options=options) as swarm:
            author, first, second = swarm.nodes[1], swarm.nodes[2], swarm.nodes[3]
            followers = {first.me, second.me}
            await author.set_test_reachable(lambda peer: peer not in followers)
            await _meshed_without(author, first, second)
            entry = await author.post("is anyone awake?")
            # The author looked its followers up after the post and could not
            # dial them: its posts are still unheard, it looks again.
            await _until(lambda: author._own_sought)
            assert author._own_unheard
            assert author.me in author._thin_feeds()
            await author.set_test_reachable(None)
            await swarm.wait_for_entry(2, entry.id, timeout=40)
            await swarm.wait_for_entry(3, entry.id, timeout=40)


@pytest.mark.trio
async def test_an_author_with_a_thin_mesh_finds_an_island_of_its_followers() -> None:
    # Three followers in a ring, each with the seed and one of the others as
    # its outbound sessions (the bound while a mesh is thin: twice
    # target_peers), while the author was out of their reach; a fourth
    # follower reaches the author and nobody else. The author's own mesh is
    # thin (one peer, d_low is 4) but not empty: before, only an empty one
    # made it look up its followers, and the ring never heard it.
    options = replace(OPTIONS, target_peers=1)
    with trio.fail_after(40):
        async with open_swarm(6, options=options) as swarm:
            author, direct = swarm.nodes[1], swarm.nodes[5]
            ring = swarm.nodes[2:5]
            members = {node.me for node in ring}
            for follower in ring:
                await follower.set_test_reachable(lambda peer: peer not in {author.me, direct.me})
            await direct.set_test_reachable(lambda peer: peer not in members)
            for here, there in zip(ring, [*ring[1:], ring[0]], strict=True):
                assert await here.dial(*there.listen_address)
            assert await direct.dial(*author.listen_address)
            for follower in (*ring, direct):
                await follower.follow(author.me)
            topic = feed_topic(author.me)
            await _until(
                lambda: (
                    all(len(node.router.mesh(topic)) == 2 for node in ring)
                    and author.router.mesh(topic) == {direct.me}
                )
            )
            for follower in ring:
                await follower.set_test_reachable(lambda peer: peer != direct.me)
            entry = await author.post("more than one of you?")
            for index in range(2, 6):
                await swarm.wait_for_entry(index, entry.id, timeout=30)


@pytest.mark.trio
async def test_a_follower_that_dialled_its_fill_still_reaches_a_feed_with_no_mesh_peer() -> None:
    # The follower dialled as many peers as its connection manager allows
    # (twice target_peers when a feed is thin), none of which replicates the
    # feed it then follows; the author refuses it. Before, it dialled nobody
    # more and never got the feed from the one other follower.
    options = replace(OPTIONS, target_peers=1)
    with trio.fail_after(40):
        async with open_swarm(6, options=options) as swarm:
            follower, author, holder = swarm.nodes[1], swarm.nodes[4], swarm.nodes[5]
            await author.set_test_reachable(lambda peer: peer != follower.me)
            for index in (2, 3):
                assert await follower.dial(*swarm.nodes[index].listen_address)
            await holder.follow(author.me)
            entry = await author.post("to whoever follows")
            await swarm.wait_for_entry(5, entry.id, timeout=20)
            await follower.follow(author.me)
            await swarm.wait_for_entry(1, entry.id, timeout=30)
            await swarm.wait_for_peer(1, holder.me)


@pytest.mark.trio
async def test_followers_that_others_dialled_full_still_reach_the_feed_they_follow() -> None:
    # Two followers mesh with each other only: peers that share nothing
    # dialled them up to their limits, and they found each other while the
    # author and the one follower holding its feed were out of reach.
    # Before, sessions others dialled counted against the limit, and
    # neither dialled anyone more.
    options = replace(OPTIONS, target_peers=1)
    with trio.fail_after(40):
        async with open_swarm(7, options=options) as swarm:
            author, first, second, holder = (swarm.nodes[i] for i in (1, 2, 3, 6))
            cut = {author.me, holder.me}
            for follower in (first, second):
                await follower.set_test_reachable(lambda peer: peer not in cut)
            for index in (3, 4, 5):
                assert await swarm.nodes[index].dial(*first.listen_address)
            await holder.follow(author.me)
            entry = await author.post("to whoever follows")
            await swarm.wait_for_entry(6, entry.id, timeout=20)
            await first.follow(author.me)
            await second.follow(author.me)
            topic = feed_topic(author.me)
            # The router has no event for its mesh: look each heartbeat.
            while True:
                if second.me in first.router.mesh(topic) and first.me in second.router.mesh(topic):
                    break
                await trio.sleep(options.router.heartbeat_interval)
            for follower in (first, second):
                await follower.set_test_reachable(None)
            await swarm.wait_for_entry(2, entry.id, timeout=30)
            await swarm.wait_for_entry(3, entry.id, timeout=30)
