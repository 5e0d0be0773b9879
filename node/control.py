"""The local control API: a running node's Unix socket, for the CLI and the app.

The socket is ``control.sock`` in the data directory (mode 0600, in a
directory of mode 0700). Each message is a 4-byte big-endian length and a
msgpack map. A request is ``{"id": int, "method": str, "params": map}``; the
answer is ``{"id": int, "result": value}`` or ``{"id": int, "error":
{"type": str, "message": str}}``. The methods are the node's verbs
(``post``, ``react``, ``repost``, ``follow``, ``unfollow``, ``block``,
``unblock``, ``profile``, ``delete``) and ``status``; ``events`` is answered
``{"id": int, "result": "subscribed"}`` once the node has subscribed, and
the connection then carries ``{"event": map}`` messages until the client
closes it. Entry and feed ids travel as 32-byte binaries.

Reading (timelines, feeds, threads) does not need the node: clients open the
store directly, which SQLite's WAL mode allows beside the running node.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import msgpack
import trio

from storage import canonical, errors
from storage.errors import InvalidArgument, LocalError, TorvError

from .home import Home

if TYPE_CHECKING:
    # The server runs inside the node; the CLI only needs the client and must
    # start fast, so the runtime is not imported at run time here.
    from .runtime import Node

__all__ = ["CONTROL_SOCKET", "ControlClient", "ControlError", "serve_control"]

CONTROL_SOCKET: Final = "control.sock"
MAX_REQUEST: Final = 64 * 1024
MAX_RESPONSE: Final = 4 * 1024 * 1024
_LENGTH: Final = struct.Struct(">I")


class ControlError(LocalError):
    """The control socket could not be used, or answered nonsense."""


def _pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return _LENGTH.pack(len(data)) + data


# --- the server ---------------------------------------------------------------


def _bytes_param(params: dict[str, Any], name: str, *, optional: bool = False) -> bytes | None:
    value = params.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidArgument(f"{name} must be a 32-byte id")
    return value


def _text_param(params: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = params.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be text")
    return value


def _entry_result(entry: Any) -> dict[str, Any] | None:
    return None if entry is None else {"id": entry.id, "seq": entry.seq}


async def _call(node: Node, method: str, params: dict[str, Any]) -> Any:
    if method == "post":
        entry = await node.post(
            _text_param(params, "text") or "",
            reply_to=_bytes_param(params, "reply_to", optional=True),
            cw=_text_param(params, "cw", optional=True),
        )
        return _entry_result(entry)
    if method == "react":
        emoji = _text_param(params, "emoji", optional=True) or "♥"
        return _entry_result(await node.react(_bytes_param(params, "entry") or b"", emoji))
    if method == "repost":
        return _entry_result(await node.repost(_bytes_param(params, "entry") or b""))
    if method == "delete":
        return _entry_result(await node.delete(_bytes_param(params, "entry") or b""))
    if method in ("follow", "unfollow", "block", "unblock"):
        feed = _bytes_param(params, "feed") or b""
        verb: Callable[[bytes], Awaitable[Any]] = getattr(node, method)
        return _entry_result(await verb(feed))
    if method == "profile":
        entry = await node.set_profile(
            name=_text_param(params, "name", optional=True),
            bio=_text_param(params, "bio", optional=True),
        )
        return _entry_result(entry)
    if method == "me":
        return node.me
    if method == "view":
        return await _view(node, params)
    if method == "set":
        await _set(node, params)
        return None
    if method == "status":
        status = node.status()
        return {
            "identity": status.identity,
            "listen": "{}:{}".format(*status.listen),
            "dht": "{}:{}".format(*status.dht),
            "dht_contacts": status.dht_contacts,
            "scope": status.scope,
            "topics": status.router.joined,
            "mesh_links": status.router.mesh_links,
            "peers": [
                {
                    "identity": info.identity,
                    "address": info.address,
                    "outbound": info.outbound,
                    "uptime": trio.current_time() - info.connected_at,
                    "score": node.router.score(info.identity),
                }
                for info in status.peers
            ],
            "sync": [[feed, have, target] for feed, (have, target) in status.sync.items()],
        }
    raise InvalidArgument(f"unknown method {method!r}")


def _cursor_param(params: dict[str, Any]) -> tuple[int, int] | None:
    value = params.get("before")
    if value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(part, int) and not isinstance(part, bool) for part in value)
    ):
        return (value[0], value[1])
    raise InvalidArgument("before must be a cursor [sort_ts, rowid]")


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer")
    return value


async def _view(node: Node, params: dict[str, Any]) -> Any:
    # Imported here: the client is built on this module.
    from .client import _network_view, settings_view, view_to_wire
    from .views import Views

    views = Views(node.local)
    name = _text_param(params, "name")
    limit = _int_param(params, "limit", 50)
    if name in ("home", "square", "mentions"):
        fn = getattr(views, name)
        return view_to_wire(await node.call_store(fn, limit, _cursor_param(params)))
    if name == "feed":
        feed = _bytes_param(params, "feed")
        return view_to_wire(await node.call_store(views.feed, feed, limit, _cursor_param(params)))
    if name == "search":
        query = _text_param(params, "query") or ""
        return view_to_wire(await node.call_store(views.search, query, limit))
    if name == "thread":
        return view_to_wire(await node.call_store(views.thread, _bytes_param(params, "entry")))
    if name == "post":
        return view_to_wire(await node.call_store(views.post, _bytes_param(params, "entry")))
    if name == "profile":
        return view_to_wire(await node.call_store(views.profile, _bytes_param(params, "feed")))
    if name == "network":
        return view_to_wire(await _network_view(node, views))
    if name == "settings":
        return view_to_wire(await node.call_store(settings_view, node, views))
    raise InvalidArgument(f"unknown view {name!r}")


def _flag(params: dict[str, Any]) -> bool:
    value = params.get("value")
    if not isinstance(value, bool):
        raise InvalidArgument("value must be true or false")
    return value


def _words(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise InvalidArgument(f"{name} must be a list of text")
    return value


async def _set(node: Node, params: dict[str, Any]) -> None:
    from .views import Views

    views = Views(node.local)
    name = _text_param(params, "name")
    if name == "algorithm":
        await node.call_store(views.set_algorithm, _text_param(params, "value"))
    elif name == "muted":
        await node.call_store(views.set_muted, _bytes_param(params, "feed"), _flag(params))
    elif name == "reposts_hidden":
        feed = _bytes_param(params, "feed")
        await node.call_store(views.set_reposts_hidden, feed, _flag(params))
    elif name == "filters":
        words, tags = _words(params, "words"), _words(params, "tags")
        await node.call_store(views.set_filters, words, tags)
    elif name == "fold_cw":
        await node.call_store(views.set_fold_cw, _flag(params))
    elif name == "square_hops":
        hops = params.get("value")
        if hops is not None and (not isinstance(hops, int) or isinstance(hops, bool)):
            raise InvalidArgument("value must be a whole number or nil")
        await node.call_store(views.set_square_hops, hops)
    else:
        raise InvalidArgument(f"unknown setting {name!r}")


def _event(event: Any) -> dict[str, Any]:
    from .runtime import EntryAdded, PeerDown, PeerUp, SyncProgress

    if isinstance(event, SyncProgress):
        return {
            "type": "sync",
            "feed": event.feed,
            "peer": event.peer,
            "have": event.have,
            "target": event.target,
        }
    if isinstance(event, EntryAdded):
        return {
            "type": "entry",
            "id": event.entry_id,
            "author": event.author,
            "seq": event.seq,
            "kind": event.kind,
            "source": event.source,
        }
    if isinstance(event, PeerUp):
        return {"type": "peer-up", "identity": event.info.identity, "address": event.info.address}
    assert isinstance(event, PeerDown)
    return {"type": "peer-down", "identity": event.identity, "reason": event.reason}


async def _read_message(stream: trio.SocketStream, buffer: bytearray) -> Any | None:
    while True:
        if len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > MAX_REQUEST:
                raise InvalidArgument("the request is too large")
            if len(buffer) >= _LENGTH.size + length:
                body = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
                del buffer[: _LENGTH.size + length]
                return canonical.unpack_bounded(body, max_size=MAX_REQUEST)
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data


async def _serve_client(node: Node, stream: trio.SocketStream) -> None:
    # A client that hangs up before its answer or during the event stream
    # (Ctrl-C in the CLI, a closed app) must not end the node: serve_listeners
    # lets an exception from a handler end the whole server.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await _serve_connection(node, stream)


async def _serve_connection(node: Node, stream: trio.SocketStream) -> None:
    buffer = bytearray()
    async with stream:
        while True:
            try:
                request = await _read_message(stream, buffer)
            except (InvalidArgument, ValueError):
                return  # a broken client; nothing sensible to answer
            if request is None:
                return
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                return
            request_id = request.get("id")
            params = request.get("params") or {}
            if request["method"] == "events":
                async with node.events() as events:
                    # Subscribed: the client may act now and miss nothing.
                    await stream.send_all(_pack({"id": request_id, "result": "subscribed"}))
                    async for event in events:
                        await stream.send_all(_pack({"event": _event(event)}))
                return
            try:
                if not isinstance(params, dict):
                    raise InvalidArgument("params must be a map")
                reply = {"id": request_id, "result": await _call(node, request["method"], params)}
            except TorvError as exc:
                reply = {
                    "id": request_id,
                    "error": {"type": type(exc).__name__, "message": str(exc)},
                }
            await stream.send_all(_pack(reply))


async def serve_control(
    node: Node, home: Home, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the control socket of ``home`` until cancelled; report its path when listening.

    A socket file left by a node that crashed is replaced; if another node
    answers on it, :class:`ControlError` is raised (one node per data directory).
    """
    path = home.path / CONTROL_SOCKET
    if path.exists():
        running = ControlClient.connect(home, timeout=5.0)
        if running is not None:
            running.close()
            raise ControlError(f"a node is already running with the data directory {home.path}")
        path.unlink()  # left by a node that crashed
    listener_socket = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await listener_socket.bind(str(path))
        os.chmod(path, 0o600)
        listener_socket.listen()
    except OSError as exc:
        listener_socket.close()
        raise ControlError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    listener = trio.SocketListener(listener_socket)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                trio.serve_listeners,
                lambda stream: _serve_client(node, stream),
                [listener],
            )
            task_status.started(path)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


# --- the client (synchronous, for the CLI) --------------------------------------


class ControlClient:
    """A connection to a running node's control socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._next_id = 0

    @classmethod
    def connect(cls, home: Home, *, timeout: float = 30.0) -> ControlClient | None:
        """A client if a node runs on ``home``, else ``None``.

        Raises :class:`UnsafePermissions` if other users can reach ``home``:
        one who can write there could have put a socket of their own in
        place of the node's.
        """
        home.check_private()
        path = home.path / CONTROL_SOCKET
        if not path.exists():
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            return None
        return cls(sock)

    def _receive(self) -> Any:
        header = self._exactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(header)
        if length > MAX_RESPONSE:
            raise ControlError("the node sent an oversize answer")
        try:
            return canonical.unpack_bounded(self._exactly(length), max_size=MAX_RESPONSE)
        except ValueError as exc:
            raise ControlError(f"the node sent an unreadable answer: {exc}") from None

    def _exactly(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            try:
                data = self._socket.recv(size - len(chunks))
            except OSError as exc:
                raise ControlError(f"the node did not answer: {exc}") from None
            if not data:
                raise ControlError("the node closed the control connection")
            chunks += data
        return bytes(chunks)

    def call(self, method: str, **params: Any) -> Any:
        """Call ``method`` on the node; its errors are raised as the same torv errors."""
        self._next_id += 1
        try:
            self._socket.sendall(_pack({"id": self._next_id, "method": method, "params": params}))
        except OSError as exc:
            raise ControlError(f"cannot reach the node: {exc}") from None
        reply = self._receive()
        if not isinstance(reply, dict) or reply.get("id") != self._next_id:
            raise ControlError("the node's answer does not match the request")
        error = reply.get("error")
        if isinstance(error, dict):
            kind = getattr(errors, str(error.get("type")), None)
            message = str(error.get("message"))
            if (
                isinstance(kind, type)
                and issubclass(kind, TorvError)
                and kind.__name__ in errors.__all__
            ):
                raise kind(message)
            raise ControlError(message)
        return reply.get("result")

    def settimeout(self, timeout: float | None) -> None:
        """How long a call may wait for the node (``None``: for ever)."""
        self._socket.settimeout(timeout)

    def subscribe(self) -> Iterator[dict[str, Any]]:
        """Subscribe on this connection and return once the node has: an event
        that happens after this returns is in the iterator, which yields each
        event until the connection closes.

        After this the connection carries only events (open another for
        calls). Raises :class:`ControlError` if the node cannot be reached or
        does not answer within the connection's timeout.
        """
        self._next_id += 1
        request_id = self._next_id
        try:
            self._socket.sendall(_pack({"id": request_id, "method": "events"}))
        except OSError as exc:
            raise ControlError(f"cannot reach the node: {exc}") from None
        while True:
            message = self._receive()
            if not isinstance(message, dict):
                continue
            if message.get("id") == request_id and message.get("result") == "subscribed":
                return self._events()
            if isinstance(message.get("event"), dict):
                # A node from before the acknowledgment: subscribed too.
                return itertools.chain([message["event"]], self._events())

    def _events(self) -> Iterator[dict[str, Any]]:
        while True:
            message = self._receive()
            if isinstance(message, dict) and isinstance(message.get("event"), dict):
                yield message["event"]

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
