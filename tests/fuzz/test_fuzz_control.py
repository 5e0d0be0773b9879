"""The control socket of a running node: mutated request streams and
requests with parameters of any type are answered (a torv error comes back
as an error reply) or end the connection; nothing else escapes the server,
and a client that hangs up does not end the node (``node/control.py``)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node.control import CONTROL_SOCKET, ControlClient, _pack

from .mutate import DrawnChoices, mutate
from .targets import TARGETS, running_node, serve_control_bytes

CONTROL = TARGETS["control"]
CORPUS = CONTROL.corpus()
METHODS = ["post", "react", "repost", "delete", "follow", "unfollow", "block", "unblock"]
METHODS += ["profile", "me", "view", "set", "status", "nope"]
PARAMS = ["text", "reply_to", "cw", "emoji", "entry", "feed", "name", "bio", "limit", "before"]
PARAMS += ["query", "value", "words", "tags"]
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(min_size=31, max_size=33)
    | st.text(max_size=20)
    | st.sampled_from(["home", "square", "feed", "search", "thread", "settings", "network"])
    | st.sampled_from(["algorithm", "muted", "filters", "fold_cw", "square_hops", "#tag"]),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)
Serve = Callable[[bytes], list[bytes]]


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[Any, Callable[..., Any]]]:
    with running_node() as running:
        yield running


@pytest.fixture(scope="module")
def serve(node: tuple[Any, Callable[..., Any]]) -> Serve:
    the_node, call = node

    def serve(data: bytes) -> list[bytes]:
        replies: list[bytes] = call(serve_control_bytes, the_node, data)
        for reply in replies:
            value = msgpack.unpackb(reply[4:], raw=False)
            assert set(value) in ({"id", "result"}, {"id", "error"})
        return replies

    return serve


def test_the_corpus_is_answered(serve: Serve) -> None:
    for data in CORPUS:
        assert serve(data)


@settings(max_examples=100)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_requests_are_answered_or_end_the_connection(
    serve: Serve, valid: bytes, data: st.DataObject
) -> None:
    serve(mutate(valid, CONTROL.layout, DrawnChoices(data), CORPUS))


@settings(max_examples=100)
@given(
    VALUES,
    st.sampled_from(METHODS) | st.text(max_size=5),
    st.none() | st.dictionaries(st.sampled_from(PARAMS), VALUES, max_size=4) | VALUES,
)
def test_requests_with_parameters_of_any_type_are_answered(
    serve: Serve, request_id: Any, method: str, params: Any
) -> None:
    assert serve(_pack({"id": request_id, "method": method, "params": params}))


# --- regressions -------------------------------------------------------------------


@pytest.mark.trio
async def test_clients_that_hang_up_before_their_answers_do_not_end_the_node() -> None:
    # Found while writing the control target: a reply to a client that had gone raised
    # BrokenResourceError out of the handler, and serve_listeners ended the node.
    from node.testing import open_swarm

    with trio.fail_after(60):
        async with open_swarm(1) as swarm:
            home = swarm.nodes[0].local.home
            path = home.path / CONTROL_SOCKET
            request = _pack({"id": 1, "method": "view", "params": {"name": "settings"}})
            for method in ("view", "events"):
                for _ in range(5):
                    raw = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    with raw:
                        await raw.connect(str(path))
                        if method == "events":
                            await raw.send(_pack({"id": 1, "method": "events"}))
                        else:
                            await raw.send(request * 50)
            # An event goes out to the subscribers that hung up.
            await swarm.nodes[0].post("an event for nobody")

            def still_answers() -> bytes:
                client = ControlClient.connect(home)
                assert client is not None
                with client:
                    identity: bytes = client.call("status")["identity"]
                    return identity

            assert await trio.to_thread.run_sync(still_answers) == swarm.nodes[0].me
