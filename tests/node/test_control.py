"""The control socket of a running node: the CLI's way in."""

from __future__ import annotations

import socket

import pytest
import trio

from node.control import CONTROL_SOCKET, ControlClient, ControlError, serve_control
from node.testing import open_swarm
from storage import InvalidArgument, NotFound


@pytest.mark.trio
async def test_writes_go_through_the_node_and_reach_its_peers() -> None:
    with trio.fail_after(60):
        async with open_swarm(2) as swarm:
            author, follower = swarm.nodes
            await follower.follow(author.me)
            home = author.local.home

            def post() -> bytes:
                client = ControlClient.connect(home)
                assert client is not None
                with client:
                    result = client.call("post", text="through the socket")
                    status = client.call("status")
                assert status["identity"] == author.me
                assert len(status["peers"]) == 1
                entry_id: bytes = result["id"]
                return entry_id

            entry_id = await trio.to_thread.run_sync(post)
            await swarm.wait_for_entry(1, entry_id, timeout=20)
            assert (home.path / CONTROL_SOCKET).stat().st_mode & 0o777 == 0o600


@pytest.mark.trio
async def test_a_subscription_is_in_place_when_subscribe_returns() -> None:
    # The node acknowledges the subscription, so what happens right after
    # subscribe() returns is never missed (the app reads its first view then).
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            home = swarm.nodes[0].local.home

            def subscribe_then_post() -> tuple[dict[str, object], bytes]:
                watcher, poster = ControlClient.connect(home), ControlClient.connect(home)
                assert watcher is not None
                assert poster is not None
                with watcher, poster:
                    events = watcher.subscribe()
                    entry_id: bytes = poster.call("post", text="right after")["id"]
                    return next(events), entry_id

            for _ in range(5):
                event, entry_id = await trio.to_thread.run_sync(subscribe_then_post)
                assert (event["type"], event["id"]) == ("entry", entry_id)


@pytest.mark.trio
async def test_errors_come_back_as_the_same_torv_errors() -> None:
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            home = swarm.nodes[0].local.home

            def calls() -> None:
                client = ControlClient.connect(home)
                assert client is not None
                with client:
                    with pytest.raises(InvalidArgument, match="32-byte"):
                        client.call("follow", feed=b"short")
                    with pytest.raises(NotFound):
                        client.call("react", entry=bytes(32))
                    with pytest.raises(InvalidArgument, match="unknown method"):
                        client.call("format_disk")
                    assert client.call("status")["peers"] == []

            await trio.to_thread.run_sync(calls)


@pytest.mark.trio
async def test_a_broken_client_does_not_disturb_the_node() -> None:
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            path = swarm.nodes[0].local.home.path / CONTROL_SOCKET
            for garbage in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x03abc", b"\x00\x00\x00\x01\x07"):
                raw = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                with raw:
                    await raw.connect(str(path))
                    await raw.send(garbage)
            home = swarm.nodes[0].local.home

            def still_there() -> int:
                client = ControlClient.connect(home)
                assert client is not None
                with client:
                    return len(client.call("status")["peers"])

            assert await trio.to_thread.run_sync(still_there) == 0


@pytest.mark.trio
async def test_one_node_per_data_directory() -> None:
    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            node = swarm.nodes[0]
            with pytest.raises(ControlError, match="already running"):
                await serve_control(node, node.local.home)
