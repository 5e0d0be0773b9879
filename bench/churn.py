"""Churn and partitions in a swarm of real nodes: do the logs converge, and how fast.

Starts ``--nodes`` nodes (50) in one process with :func:`node.testing.open_swarm`
(loopback TCP with the Noise handshake, a DHT island per node, all
bootstrapped from node 0, the seed). Each node follows ``--follows`` others
picked at random and posts once; the bench waits until every node holds
every feed it follows (the start-up convergence). Then, by ``--scenario``:

- ``restarts``: for ``--seconds`` the running nodes post ``--rate`` posts per
  second in all (the author picked at random), while ``--restart-share`` of
  the nodes (30%) are each stopped at a random moment, kept down for a random
  2 to 8 s and started again from their data directory and port, with the
  seed as their configuration names it. Printed: how long after the last
  restart (and after the last post) every follower held every entry;
- ``partition``: the swarm is cut into two halves (:meth:`Swarm.partition`:
  sessions across the cut end, dials and DHT datagrams across it fail) for
  ``--partition-seconds`` (30) while both sides post, then healed. Printed:
  how long after the heal every follower held every entry, and the sessions
  across the halves then;
- ``seedless``: every seed (node 0) is stopped; the others post for
  ``--seconds`` and must converge without it; then ``--seedless-restarts``
  nodes are stopped, miss some posts, and are started with no seed at all:
  they must rejoin from their address book and the DHT alone. Printed: the
  time to converge without the seed, and for the restarted nodes the time to
  their first session and to hold every entry.

Convergence is measured with :meth:`Swarm.wait_for_heads` on every running
node at once: the time is when the last node held the last seq of every
feed it follows (an event-driven wait, checked at least once a second).
A node that does not converge within ``--timeout`` is reported with its
sessions and what it lacks, and the bench exits with status 1.

All nodes share one trio thread, one GIL and the machine's cores with
whatever else runs there: times include queueing behind the other nodes'
work and are noisy. The nodes' connection managers run every 5 s and back
off failed dials (5 s doubling): reconnection times are in those units.

Run: ``.venv/bin/python bench/churn.py [--scenario {restarts,partition,seedless,all}]
[--nodes N] [--seed S]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import trio

import _gen  # noqa: F401  (puts this checkout on sys.path)
from _measure import machine_load, peak_rss_mb
from gossip.wire import feed_topic
from node.runtime import Node, NodeOptions
from node.testing import Swarm, SwarmTimeout, open_swarm

SCENARIOS = ("restarts", "partition", "seedless")


@dataclass(slots=True)
class _World:
    """The swarm and what the bench knows of it: follows, posts, locks."""

    swarm: Swarm
    rng: random.Random
    #: node index -> the node indices it follows.
    follows: dict[int, list[int]]
    #: node index -> the last seq it posted.
    posted: dict[int, int] = field(default_factory=dict)
    #: Held while a node posts and while it stops: no post runs into a stop.
    locks: dict[int, trio.Lock] = field(default_factory=dict)
    posts: int = 0

    def heads(self, index: int) -> dict[bytes, int]:
        """The seq of each feed node ``index`` follows that it must end up holding."""
        nodes = self.swarm.nodes
        return {nodes[other].me: self.posted[other] for other in self.follows[index]}


async def _post(world: _World, index: int) -> None:
    async with world.locks[index]:
        if index not in world.swarm.running():
            return
        entry = await world.swarm.nodes[index].post(f"post {world.posts} by node {index}")
    world.posted[index] = entry.seq
    world.posts += 1


async def _publish(
    world: _World, seconds: float, rate: float, authors: Sequence[int] | None = None
) -> float:
    """Post ``rate`` times a second for ``seconds`` from running nodes (of
    ``authors`` if given), each post by a node picked at random; return the
    time of the last post."""
    start = trio.current_time()
    last = start
    for number in range(round(seconds * rate)):
        await trio.sleep_until(start + number / rate)
        running = set(world.swarm.running())
        candidates = [i for i in (authors or range(len(world.swarm.nodes))) if i in running]
        if candidates:
            await _post(world, world.rng.choice(candidates))
            last = trio.current_time()
    return last


async def _converge(world: _World, indices: Sequence[int], patience: float) -> dict[int, float]:
    """Wait until each of ``indices`` holds every feed it follows to its
    last seq; return when each did (``trio.current_time()``). Raises
    :class:`SwarmTimeout` after printing what the late ones lack."""
    done: dict[int, float] = {}
    late: list[int] = []

    async def one(index: int) -> None:
        try:
            await world.swarm.wait_for_heads(index, world.heads(index), timeout=patience)
        except SwarmTimeout:
            late.append(index)
        else:
            done[index] = trio.current_time()

    async with trio.open_nursery() as nursery:
        for index in indices:
            nursery.start_soon(one, index)
    if late:
        for index in sorted(late):
            print(f"  node {index} did not converge: {await _lacks(world, index)}", flush=True)
        raise SwarmTimeout(f"{len(late)} of {len(indices)} nodes did not converge in {patience} s")
    return done


async def _lacks(world: _World, index: int) -> str:
    """What node ``index`` lacks, and the sessions that could bring it."""
    swarm = world.swarm
    node = swarm.nodes[index]
    sessions = {peer.identity for peer in node.peers()}
    heads = world.heads(index)
    held = await node.call_store(lambda: {f: node.store.latest_seq(f) for f in heads})
    lacking = []
    for author in world.follows[index]:
        feed = swarm.nodes[author].me
        if held[feed] >= heads[feed]:
            continue
        followers = {
            swarm.nodes[j].me for j in range(len(swarm.nodes)) if author in world.follows[j]
        }
        author_sessions = {peer.identity for peer in swarm.nodes[author].peers()}
        lacking.append(
            f"feed of node {author} ({'up' if author in swarm.running() else 'down'}):"
            f" holds {held[feed]} of {heads[feed]}, session with the author"
            f" {'yes' if feed in sessions else 'no'}, with other followers"
            f" {len(sessions & followers)}, mesh {len(node.router.mesh(feed_topic(feed)))};"
            f" the author has sessions with {len(author_sessions & followers)} of its"
            f" {len(followers)} followers"
        )
    return f"{len(sessions)} sessions; " + "; ".join(lacking)


def _spread(times: Sequence[float]) -> str:
    return (
        f"median {statistics.median(times):.1f} s, max {max(times):.1f} s" if times else "no nodes"
    )


def _sessions(swarm: Swarm) -> str:
    peers = [len(swarm.nodes[i].peers()) for i in swarm.running()]
    median = statistics.median(peers)
    return f"sessions per node min {min(peers)} median {median:.0f} max {max(peers)}"


async def _start_world(swarm: Swarm, follows: int, seed: int, patience: float) -> _World:
    rng = random.Random(seed)
    count = len(swarm.nodes)
    world = _World(
        swarm,
        rng,
        {i: rng.sample([j for j in range(count) if j != i], follows) for i in range(count)},
        locks={i: trio.Lock() for i in range(count)},
    )
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(_follow_and_post, world, index)
    followed = trio.current_time()
    done = await _converge(world, range(count), patience)
    print(
        f"start-up: {count} nodes each followed {follows} others and posted once, all at"
        f" once, in {followed - started:.1f} s; every follower held every entry"
        f" {max(0.0, max(done.values()) - followed):.1f} s after that; {_sessions(swarm)}",
        flush=True,
    )
    return world


async def _follow_and_post(world: _World, index: int) -> None:
    node = world.swarm.nodes[index]
    for other in world.follows[index]:
        await node.follow(world.swarm.nodes[other].me)
    await _post(world, index)


async def _restarts(world: _World, args: argparse.Namespace) -> None:
    swarm = world.swarm
    count = len(swarm.nodes)
    chosen = world.rng.sample(range(count), round(args.restart_share * count))
    seed = swarm.nodes[0].listen_address
    last_restart = 0.0
    start = trio.current_time()

    async def restart(index: int, at: float, down: float) -> None:
        nonlocal last_restart
        await trio.sleep_until(at)
        async with world.locks[index]:
            await swarm.stop(index)
        await trio.sleep(down)
        # The seed is in the node's configuration, as a user's would be.
        bootstrap = () if index == 0 else (seed,)
        await swarm.start(index, replace(swarm.options, bootstrap=bootstrap))
        last_restart = max(last_restart, trio.current_time())

    last_post = start
    async with trio.open_nursery() as nursery:
        for index in chosen:
            at = start + world.rng.uniform(0.05, 0.7) * args.seconds
            nursery.start_soon(restart, index, at, world.rng.uniform(2.0, 8.0))
        last_post = await _publish(world, args.seconds, args.rate)
    print(
        f"restarts: {len(chosen)} of {count} nodes stopped and started again (down 2-8 s each)"
        f" during {args.seconds:.0f} s of posting, {world.posts} posts in all so far",
        flush=True,
    )
    done = await _converge(world, swarm.running(), args.timeout)
    end = max(done.values())
    print(
        f"restarts: every follower held every entry {end - last_restart:.1f} s after the last"
        f" restart ({max(0.0, end - last_post):.1f} s after the last post); {_sessions(swarm)}",
        flush=True,
    )


def _across(swarm: Swarm, halves: Sequence[set[int]]) -> int:
    """Sessions between the two halves."""
    identities = {swarm.nodes[i].me for i in halves[1]}
    return sum(peer.identity in identities for i in halves[0] for peer in swarm.nodes[i].peers())


async def _partition(world: _World, args: argparse.Namespace) -> None:
    swarm = world.swarm
    count = len(swarm.nodes)
    order = list(range(count))
    world.rng.shuffle(order)
    halves = [set(order[: count // 2]), set(order[count // 2 :])]
    crossing = sum(
        1 for i in range(count) for j in world.follows[i] if (i in halves[0]) != (j in halves[0])
    )
    before = _across(swarm, halves)
    await swarm.partition(halves)
    cut_at = trio.current_time()
    await _publish(world, args.partition_seconds, args.rate)
    during = _across(swarm, halves)
    await swarm.heal()
    healed = trio.current_time()
    print(
        f"partition: two halves of {len(halves[0])} and {len(halves[1])} nodes cut for"
        f" {healed - cut_at:.0f} s while both posted ({world.posts} posts in all so far);"
        f" {crossing} of {count * args.follows} follows cross the cut; sessions across it"
        f" before {before}, during {during}",
        flush=True,
    )
    done = await _converge(world, swarm.running(), args.timeout)
    after = [t - healed for t in done.values()]
    print(
        f"partition: after the heal every follower held every entry in {max(after):.1f} s"
        f" (per node: {_spread(after)}); sessions across the halves now"
        f" {_across(swarm, halves)}; {_sessions(swarm)}",
        flush=True,
    )


async def _first_session(node: Node, patience: float) -> float:
    """When ``node``'s first session started (``trio.current_time()``); raises
    :class:`SwarmTimeout` if it has none within ``patience`` s."""
    with trio.move_on_after(patience):
        async with node.events() as events:
            while not node.peers():
                with trio.move_on_after(0.5):
                    await events.receive()
            return min(peer.connected_at for peer in node.peers())
    raise SwarmTimeout(f"no session within {patience} s")


async def _seedless(world: _World, args: argparse.Namespace) -> None:
    swarm = world.swarm
    count = len(swarm.nodes)
    async with world.locks[0]:
        await swarm.stop(0)
    others = [i for i in range(count) if i != 0]
    last_post = await _publish(world, args.seconds, args.rate, others)
    done = await _converge(world, swarm.running(), args.timeout)
    print(
        f"seedless: with the seed (node 0) stopped, {count - 1} nodes posted for"
        f" {args.seconds:.0f} s ({world.posts} posts in all so far); every follower held every"
        f" entry {max(0.0, max(done.values()) - last_post):.1f} s after the last post;"
        f" {_sessions(swarm)}",
        flush=True,
    )
    chosen = world.rng.sample(others, args.seedless_restarts)
    for index in chosen:
        async with world.locks[index]:
            await swarm.stop(index)
    await _publish(world, 5.0, args.rate, [i for i in others if i not in chosen])
    up: dict[int, float] = {}
    first: dict[int, float] = {}

    async def rejoin(index: int) -> None:
        # No seed: swarm.options has none. The address book and the stored
        # DHT contacts are all the node has.
        begun = trio.current_time()
        node = await swarm.start(index)
        assert not node.options.bootstrap
        up[index] = trio.current_time() - begun
        first[index] = await _first_session(node, args.timeout) - begun

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for index in chosen:
            nursery.start_soon(rejoin, index)
    done = await _converge(world, chosen, args.timeout)
    times = [t - started for t in done.values()]
    print(
        f"seedless: {len(chosen)} nodes restarted with no seed (at once): start returned after"
        f" {_spread(list(up.values()))} (the DHT waits on contacts that are gone); first"
        f" session after {_spread(list(first.values()))}; held every entry after"
        f" {_spread(times)}",
        flush=True,
    )


async def _scenario(name: str, args: argparse.Namespace) -> bool:
    print(f"--- {name}", flush=True)
    options = replace(NodeOptions(), control=False)
    started = trio.current_time()
    with machine_load() as load:
        async with open_swarm(args.nodes, options=options) as swarm:
            print(
                f"started {args.nodes} nodes in {trio.current_time() - started:.1f} s", flush=True
            )
            try:
                world = await _start_world(swarm, args.follows, args.seed, args.timeout)
                await {"restarts": _restarts, "partition": _partition, "seedless": _seedless}[
                    name
                ](world, args)
            except SwarmTimeout as exc:
                print(f"{name}: FAILED: {exc}", flush=True)
                return False
    print(
        f"{name}: {trio.current_time() - started:.0f} s in all; CPU of this process"
        f" {load.own_cpu_s:.0f} s{load.note()}; peak RSS {peak_rss_mb():.0f} MB",
        flush=True,
    )
    return True


async def _main(args: argparse.Namespace) -> bool:
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    ok = True
    for name in names:
        ok = await _scenario(name, args) and ok
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--follows", type=int, default=6, help="feeds each node follows")
    parser.add_argument("--rate", type=float, default=5.0, help="posts per second in all")
    parser.add_argument("--seconds", type=float, default=40.0, help="posting time")
    parser.add_argument("--restart-share", type=float, default=0.3)
    parser.add_argument("--partition-seconds", type=float, default=30.0)
    parser.add_argument("--seedless-restarts", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0, help="convergence deadline (s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not trio.run(_main, args):
        sys.exit(1)


if __name__ == "__main__":
    main()
