"""The square's spam bound in a running swarm: a feed nobody follows gets at
most its burst of posts onto other nodes' squares, and no further than that;
following it brings its whole log, unbounded."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from node.runtime import Node, NodeOptions
from node.square import BURST
from node.testing import open_swarm
from storage.payloads import Post

SPAM = 30


async def judged(node: Node, ids: Sequence[bytes]) -> None:
    """Wait until ``node`` has judged every one of ``ids``."""
    async with node.events() as events:
        while not all(node.router.judged(entry_id) for entry_id in ids):
            with trio.move_on_after(0.5):  # ignored entries raise no event
                await events.receive()


def on_square(node: Node, author: bytes) -> list[str]:
    texts = []
    for stored in node.store.recent(limit=1000):
        if stored.entry.author == author:
            assert isinstance(stored.entry.content, Post)
            texts.append(stored.entry.content.text)
    return texts


@pytest.mark.trio
async def test_a_spamming_feed_gets_only_its_burst_onto_the_square() -> None:
    with trio.fail_after(90):
        async with open_swarm(4, options=NodeOptions(square=True)) as swarm:
            seed, spammer, watcher, stranger = swarm.nodes
            # The watcher and the stranger hear the spammer directly as well as
            # through the seed: each node's own bound is what stops the flood.
            for index in (2, 3):
                await swarm.nodes[index].dial(*spammer.listen_address)
                await swarm.wait_for_peer(index, spammer.me, timeout=20)
            first = await spammer.post("hello, square")
            await swarm.wait_for_entry(2, first.id, timeout=20)

            flood = [await spammer.post(f"buy now {n}") for n in range(SPAM)]
            hello = await stranger.post("a stranger says hi")
            await judged(watcher, [entry.id for entry in flood])
            await swarm.wait_for_entry(2, hello.id, timeout=20)

            # The first post and BURST - 1 of the flood; the rest were ignored
            # (neither kept nor forwarded), on every node on the square.
            for index, node in ((0, seed), (2, watcher), (3, stranger)):
                await judged(node, [entry.id for entry in flood])
                kept = on_square(node, spammer.me)
                assert len(kept) == BURST, (index, kept)
                assert kept[-1] == "hello, square"
            assert on_square(watcher, stranger.me) == ["a stranger says hi"]
            assert watcher.store.latest_seq(spammer.me) == 0  # no log: only the square

            # Following the feed brings all of it: the scope is not bounded.
            await watcher.follow(spammer.me)
            await swarm.wait_for_seq(2, spammer.me, SPAM + 1, timeout=30)
            spam = [s for s in watcher.store.recent(limit=1000) if s.entry.author == spammer.me]
            assert len(spam) == SPAM + 1
            assert not any(stored.loose for stored in spam)  # the log's copies took their place


@pytest.mark.trio
async def test_deleted_square_posts_go_and_blocked_feeds_stay_out() -> None:
    with trio.fail_after(90):
        async with open_swarm(3, options=NodeOptions(square=True)) as swarm:
            _, author, watcher = swarm.nodes
            await watcher.dial(*author.listen_address)
            await swarm.wait_for_peer(2, author.me, timeout=20)
            regret = await author.post("I should not have said that")
            await swarm.wait_for_entry(2, regret.id, timeout=20)
            assert watcher.store.get(regret.id).loose

            delete = await author.delete(regret.id)
            async with watcher.events() as events:
                while watcher.store.find(regret.id) is not None:
                    with trio.move_on_after(0.5):
                        await events.receive()
            assert watcher.router.judged(delete.id)

            await watcher.block(author.me)
            later = await author.post("still talking")
            await swarm.wait_for_entry(0, later.id, timeout=20)  # the seed keeps it
            await judged(watcher, [later.id])  # and passes it on: refused here
            assert watcher.store.find(later.id) is None
