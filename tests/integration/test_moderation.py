"""Blocking in a running swarm: the feed is purged, its session ends and a new
one is refused, and its entries are not fetched again."""

from __future__ import annotations

import pytest
import trio

from node.runtime import PeerDown
from node.testing import open_swarm


@pytest.mark.trio
async def test_a_block_purges_the_feed_and_refuses_its_connections() -> None:
    with trio.fail_after(60):
        async with open_swarm(3) as swarm:
            troll, me, friend = swarm.nodes
            await me.follow(troll.me)
            await me.follow(friend.me)
            await friend.follow(troll.me)
            nasty = await troll.post("something nasty")
            await swarm.wait_for_entry(1, nasty.id, timeout=20)
            await swarm.wait_for_peer(1, troll.me, timeout=20)

            async with me.events() as events:
                await me.block(troll.me)
                async for event in events:
                    if isinstance(event, PeerDown) and event.identity == troll.me:
                        break
            assert me.store.find(nasty.id) is None
            assert me.store.feed_info(troll.me) is None
            # The troll dials again: the handshake completes (it proves who it
            # is), and then the blocking node hangs up.
            async with troll.events() as events:
                await troll.dial(*me.listen_address)
                async for event in events:
                    if isinstance(event, PeerDown) and event.identity == me.me:
                        break
            assert all(info.identity != troll.me for info in me.peers())

            # The friend still holds and gossips the troll's feed; none of it
            # comes back to the node that blocked it.
            later = await troll.post("more of the same")
            await swarm.wait_for_entry(2, later.id, timeout=20)
            hello = await friend.post("hi")
            await swarm.wait_for_entry(1, hello.id, timeout=20)
            assert me.store.find(later.id) is None
            assert me.store.feed_info(troll.me) is None
