"""The narrow bridge between the terminal app and a node.

The app runs on textual's asyncio loop in the main thread; the node is a trio
program. The app only ever holds a :class:`NodeClient`: blocking methods that
return plain views (:mod:`node.views`), to be called off the UI loop (from a
worker thread), and :meth:`NodeClient.subscribe` for events.

Two implementations:

- :class:`InProcessClient`: the node runs in this process, with ``trio.run``
  in a background thread (:class:`BackgroundTrio`); calls enter it through
  ``trio.from_thread`` with the node's trio token.
- :class:`AttachedClient`: the node is a ``torv run`` process; calls go
  through its control socket (``torv ui --attach``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import trio

from storage.errors import ConfigError, InvalidArgument, LocalError

from .control import ControlClient, ControlError
from .home import Home
from .local import LocalNode
from .views import (
    ClientEvent,
    NetworkView,
    PeerView,
    PostView,
    ProfileView,
    SettingsView,
    SyncView,
    Views,
)

__all__ = [
    "AttachedClient",
    "BackgroundTrio",
    "EventCallback",
    "InProcessClient",
    "NodeClient",
    "settings_view",
    "start_node",
    "view_from_wire",
    "view_to_wire",
]

if TYPE_CHECKING:
    from .runtime import NodeOptions

T = TypeVar("T")
V = TypeVar("V")
Cursor = tuple[int, int]
#: Called with each event, from a thread that is not the app's: it must not
#: block (textual's ``App.post_message`` / ``call_from_thread`` are safe).
EventCallback = Callable[[ClientEvent], None]

_START_TIMEOUT: Final = 60.0


class NodeClient(Protocol):
    """What the app may ask of a node. Every method blocks: call off the UI loop.

    Errors are :class:`storage.errors.TorvError` subclasses with a message
    fit for a person (a missing post, a malformed id, a node that went away).
    """

    me: bytes
    #: ``True`` when the node runs inside this process.
    embedded: bool

    def home(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]: ...
    def square(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]: ...
    def mentions(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]: ...
    def feed(
        self, feed: bytes, limit: int = 50, before: Cursor | None = None
    ) -> list[PostView]: ...
    def search(self, query: str, limit: int = 50) -> list[PostView]: ...
    def thread(self, entry_id: bytes) -> list[PostView]: ...
    def post_view(self, entry_id: bytes) -> PostView | None: ...
    def profile(self, feed: bytes) -> ProfileView: ...
    def network(self) -> NetworkView: ...
    def settings(self) -> SettingsView: ...

    def post(self, text: str, *, reply_to: bytes | None = None, cw: str | None = None) -> bytes:
        """Publish a post (or a reply); return its entry id."""
        ...

    def react(self, entry_id: bytes, emoji: str = "♥") -> None: ...
    def repost(self, entry_id: bytes) -> None: ...
    def follow(self, feed: bytes) -> None: ...
    def unfollow(self, feed: bytes) -> None: ...
    def block(self, feed: bytes) -> None: ...
    def unblock(self, feed: bytes) -> None: ...
    def set_profile(self, *, name: str | None = None, bio: str | None = None) -> None: ...

    # Private settings (config.toml): never published, never sent to peers.
    def set_algorithm(self, name: str) -> None:
        """Rank home with ``name``; raises AlgorithmError if it does not load."""
        ...

    def set_muted(self, feed: bytes, muted: bool) -> None: ...
    def set_reposts_hidden(self, feed: bytes, hidden: bool) -> None: ...
    def set_filters(self, words: list[str], tags: list[str]) -> None: ...
    def set_fold_cw(self, fold: bool) -> None: ...
    def set_square_hops(self, hops: int | None) -> None: ...

    def subscribe(self, callback: EventCallback) -> None:
        """Deliver every later event to ``callback`` until :meth:`close`."""
        ...

    def close(self) -> None: ...


# --- trio in a background thread ----------------------------------------------------


class BackgroundTrio(Generic[T]):
    """``trio.run`` in a daemon thread, around one long-running task.

    ``main`` is started with ``nursery.start``: what it passes to
    ``task_status.started`` is returned by :meth:`start`. :meth:`stop`
    cancels everything and joins the thread.
    """

    def __init__(self, main: Callable[..., Awaitable[None]], *, name: str = "torv-node") -> None:
        self._main = main
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None

    @property
    def token(self) -> trio.lowlevel.TrioToken:
        assert self._token is not None, "not started"
        return self._token

    def start(self, timeout: float = _START_TIMEOUT) -> T:
        """Run ``main`` until it reports started; raise what it raised instead."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise LocalError(f"the node did not start within {timeout:.0f} s")
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def _run(self) -> None:
        try:
            trio.run(self._trio_main)
        except BaseException as exc:  # reported to the thread that waits in start()
            if not self._ready.is_set():
                self._error = _unwrap(exc)
        finally:
            self._ready.set()

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._cancel = nursery.cancel_scope
            self._value = await nursery.start(self._main)
            self._ready.set()

    def call(self, fn: Callable[..., Awaitable[V]], *args: Any) -> V:
        """Run ``await fn(*args)`` in the trio thread; block until it returns."""
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def stop(self, timeout: float = 30.0) -> None:
        if self._token is not None and self._cancel is not None:
            cancel = self._cancel
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(cancel.cancel, trio_token=self._token)
        if self._thread.is_alive():
            self._thread.join(timeout)


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside (possibly nested) exception groups, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# --- a node in this process ------------------------------------------------------------


class InProcessClient:
    """A client for a :class:`node.runtime.Node` running in a :class:`BackgroundTrio`."""

    embedded = True

    def __init__(self, node: Any, runner: BackgroundTrio[Any], nursery: trio.Nursery) -> None:
        self._node = node
        self._runner = runner
        self._nursery = nursery
        self._views = Views(node.local)
        self.me: bytes = node.me

    def _read(self, fn: Callable[..., V], *args: Any, **kwargs: Any) -> V:
        result: V = self._runner.call(
            self._node.call_store, functools.partial(fn, *args, **kwargs)
        )
        return result

    def _act(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return self._runner.call(functools.partial(fn, *args, **kwargs))

    def home(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._read(self._views.home, limit, before)

    def square(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._read(self._views.square, limit, before)

    def mentions(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._read(self._views.mentions, limit, before)

    def feed(self, feed: bytes, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._read(self._views.feed, feed, limit, before)

    def search(self, query: str, limit: int = 50) -> list[PostView]:
        return self._read(self._views.search, query, limit)

    def thread(self, entry_id: bytes) -> list[PostView]:
        return self._read(self._views.thread, entry_id)

    def post_view(self, entry_id: bytes) -> PostView | None:
        return self._read(self._views.post, entry_id)

    def profile(self, feed: bytes) -> ProfileView:
        return self._read(self._views.profile, feed)

    def network(self) -> NetworkView:
        view: NetworkView = self._runner.call(_network_view, self._node, self._views)
        return view

    def settings(self) -> SettingsView:
        return self._read(settings_view, self._node, self._views)

    def post(self, text: str, *, reply_to: bytes | None = None, cw: str | None = None) -> bytes:
        entry = self._act(self._node.post, text, reply_to=reply_to, cw=cw)
        return bytes(entry.id)

    def react(self, entry_id: bytes, emoji: str = "♥") -> None:
        self._act(self._node.react, entry_id, emoji)

    def repost(self, entry_id: bytes) -> None:
        self._act(self._node.repost, entry_id)

    def follow(self, feed: bytes) -> None:
        self._act(self._node.follow, feed)

    def unfollow(self, feed: bytes) -> None:
        self._act(self._node.unfollow, feed)

    def block(self, feed: bytes) -> None:
        self._act(self._node.block, feed)

    def unblock(self, feed: bytes) -> None:
        self._act(self._node.unblock, feed)

    def set_profile(self, *, name: str | None = None, bio: str | None = None) -> None:
        self._act(self._node.set_profile, name=name, bio=bio)

    def set_algorithm(self, name: str) -> None:
        self._read(self._views.set_algorithm, name)

    def set_muted(self, feed: bytes, muted: bool) -> None:
        self._read(self._views.set_muted, feed, muted)

    def set_reposts_hidden(self, feed: bytes, hidden: bool) -> None:
        self._read(self._views.set_reposts_hidden, feed, hidden)

    def set_filters(self, words: list[str], tags: list[str]) -> None:
        self._read(self._views.set_filters, words, tags)

    def set_fold_cw(self, fold: bool) -> None:
        self._read(self._views.set_fold_cw, fold)

    def set_square_hops(self, hops: int | None) -> None:
        self._read(self._views.set_square_hops, hops)

    def subscribe(self, callback: EventCallback) -> None:
        # Returns once subscribed, so a view read next misses no event between.
        trio.from_thread.run(
            self._nursery.start, _pump, self._node, callback, trio_token=self._runner.token
        )

    def close(self) -> None:
        """Stop the node (if this client started it) and its thread."""
        self._runner.stop()


def start_node(local: LocalNode, options: NodeOptions | None = None) -> InProcessClient:
    """Run a node for ``local`` in a background trio thread; a client for it.

    Raises what starting the node raised (an address in use, a node already
    running on the data directory). :meth:`InProcessClient.close` stops it.
    """
    from .runtime import open_node

    async def main(task_status: trio.TaskStatus[tuple[Any, trio.Nursery]]) -> None:
        async with open_node(local, options) as node, trio.open_nursery() as nursery:
            task_status.started((node, nursery))
            await trio.sleep_forever()

    runner: BackgroundTrio[tuple[Any, trio.Nursery]] = BackgroundTrio(main)
    node, nursery = runner.start()
    return InProcessClient(node, runner, nursery)


async def _pump(node: Any, callback: EventCallback, *, task_status: trio.TaskStatus[None]) -> None:
    async with node.events() as events:
        task_status.started()  # subscribed: no later event is missed
        async for event in events:
            callback(client_event(event))


def client_event(event: Any) -> ClientEvent:
    """A node event (:mod:`node.runtime`) as the app sees it."""
    from .runtime import EntryAdded, PeerDown, PeerUp, SyncProgress

    if isinstance(event, EntryAdded):
        return ClientEvent(
            "entry", entry_id=event.entry_id, author=event.author, entry_kind=event.kind
        )
    if isinstance(event, PeerUp):
        return ClientEvent("peer-up", peer=event.info.identity)
    if isinstance(event, PeerDown):
        return ClientEvent("peer-down", peer=event.identity)
    assert isinstance(event, SyncProgress)
    return ClientEvent(
        "sync", feed=event.feed, peer=event.peer, have=event.have, target=event.target
    )


def settings_view(node: Any, views: Views) -> SettingsView:
    """The settings screen's view of a running node (call in its store worker)."""
    options = node.options
    return views.settings(
        seeds=tuple(f"{host}:{port}" for host, port in options.bootstrap),
        network_key=options.network_key,
        hops=options.hops,
        square=options.square,
    )


async def _network_view(node: Any, views: Views) -> NetworkView:
    status = node.status()
    now = trio.current_time()
    try:
        contacts = await node.dht_contacts()
    except Exception:  # the DHT island must never take the app down
        contacts = []

    def names() -> dict[bytes, str]:
        feeds = {info.identity for info in status.peers} | set(status.sync)
        return {feed: views.name(feed) for feed in feeds}

    named = await node.call_store(names)
    peers = tuple(
        PeerView(
            identity=info.identity,
            name=named[info.identity],
            address=info.address,
            outbound=info.outbound,
            score=float(node.router.score(info.identity)),
            uptime=max(0.0, now - info.connected_at),
        )
        for info in status.peers
    )
    sync = tuple(
        SyncView(feed, named[feed], have, target)
        for feed, (have, target) in sorted(status.sync.items(), key=lambda kv: named[kv[0]])
        if feed != status.identity
    )
    return NetworkView(
        identity=status.identity,
        listen="{}:{}".format(*status.listen),
        dht="{}:{}".format(*status.dht),
        peers=peers,
        dht_contacts=tuple(f"{host}:{port}" for host, port in contacts),
        sync=sync,
        topics=status.router.joined,
        mesh_links=status.router.mesh_links,
        entries_in=node.entries_in,
        entries_out=node.entries_out,
    )


# --- a node in another process (torv ui --attach) -------------------------------------


def view_to_wire(view: Any) -> Any:
    """A view (or list of views) as plain msgpack-ready values."""
    if isinstance(view, list):
        return [view_to_wire(item) for item in view]
    if view is None:
        return None
    return dataclasses.asdict(view)


def view_from_wire(cls: type[V], data: Any) -> V:
    """Rebuild a view of type ``cls`` from :func:`view_to_wire`'s output.

    Raises :class:`ControlError` if the data does not fit ``cls``.
    """
    if not isinstance(data, dict):
        raise ControlError(f"the node sent a malformed {cls.__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            continue
        if name == "peers" and isinstance(value, list):
            value = tuple(view_from_wire(PeerView, item) for item in value)
        elif name == "sync" and isinstance(value, list):
            value = tuple(view_from_wire(SyncView, item) for item in value)
        elif isinstance(value, list):
            value = _tuples(value)
        values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ControlError(f"the node sent a malformed {cls.__name__}: {exc}") from None


def _tuples(value: Any) -> Any:
    """Lists (msgpack arrays) back into the tuples the views hold."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


class AttachedClient:
    """A client for a node running in another process, through its control socket."""

    embedded = False

    def __init__(self, home: Home) -> None:
        connection = ControlClient.connect(home, timeout=30.0)
        if connection is None:
            raise ConfigError(
                f"no node is running with the data directory {home.path} (start one: torv run)"
            )
        self._home = home
        self._connection = connection
        self._lock = threading.Lock()
        self._event_connections: list[ControlClient] = []
        self.me: bytes = self._call_bytes("me")

    def _call(self, method: str, **params: Any) -> Any:
        with self._lock:
            return self._connection.call(method, **params)

    def _call_bytes(self, method: str) -> bytes:
        value = self._call(method)
        if not isinstance(value, bytes):
            raise ControlError(f"the node sent a malformed answer to {method}")
        return value

    def _posts(self, method: str, **params: Any) -> list[PostView]:
        result = self._call("view", name=method, **params)
        if not isinstance(result, list):
            raise ControlError(f"the node sent a malformed answer to {method}")
        return [view_from_wire(PostView, item) for item in result]

    def home(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._posts("home", limit=limit, before=before)

    def square(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._posts("square", limit=limit, before=before)

    def mentions(self, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._posts("mentions", limit=limit, before=before)

    def feed(self, feed: bytes, limit: int = 50, before: Cursor | None = None) -> list[PostView]:
        return self._posts("feed", feed=feed, limit=limit, before=before)

    def search(self, query: str, limit: int = 50) -> list[PostView]:
        return self._posts("search", query=query, limit=limit)

    def thread(self, entry_id: bytes) -> list[PostView]:
        return self._posts("thread", entry=entry_id)

    def post_view(self, entry_id: bytes) -> PostView | None:
        result = self._call("view", name="post", entry=entry_id)
        return None if result is None else view_from_wire(PostView, result)

    def profile(self, feed: bytes) -> ProfileView:
        return view_from_wire(ProfileView, self._call("view", name="profile", feed=feed))

    def network(self) -> NetworkView:
        return view_from_wire(NetworkView, self._call("view", name="network"))

    def settings(self) -> SettingsView:
        return view_from_wire(SettingsView, self._call("view", name="settings"))

    def post(self, text: str, *, reply_to: bytes | None = None, cw: str | None = None) -> bytes:
        result = self._call("post", text=text, reply_to=reply_to, cw=cw)
        if not isinstance(result, dict) or not isinstance(result.get("id"), bytes):
            raise ControlError("the node sent a malformed answer to post")
        return bytes(result["id"])

    def react(self, entry_id: bytes, emoji: str = "♥") -> None:
        self._call("react", entry=entry_id, emoji=emoji)

    def repost(self, entry_id: bytes) -> None:
        self._call("repost", entry=entry_id)

    def follow(self, feed: bytes) -> None:
        self._call("follow", feed=feed)

    def unfollow(self, feed: bytes) -> None:
        self._call("unfollow", feed=feed)

    def block(self, feed: bytes) -> None:
        self._call("block", feed=feed)

    def unblock(self, feed: bytes) -> None:
        self._call("unblock", feed=feed)

    def set_profile(self, *, name: str | None = None, bio: str | None = None) -> None:
        self._call("profile", name=name, bio=bio)

    def set_algorithm(self, name: str) -> None:
        self._call("set", name="algorithm", value=name)

    def set_muted(self, feed: bytes, muted: bool) -> None:
        self._call("set", name="muted", feed=feed, value=muted)

    def set_reposts_hidden(self, feed: bytes, hidden: bool) -> None:
        self._call("set", name="reposts_hidden", feed=feed, value=hidden)

    def set_filters(self, words: list[str], tags: list[str]) -> None:
        self._call("set", name="filters", words=words, tags=tags)

    def set_fold_cw(self, fold: bool) -> None:
        self._call("set", name="fold_cw", value=fold)

    def set_square_hops(self, hops: int | None) -> None:
        self._call("set", name="square_hops", value=hops)

    def subscribe(self, callback: EventCallback) -> None:
        # Returns once the node has subscribed, as InProcessClient.subscribe.
        connection = ControlClient.connect(self._home, timeout=30.0)
        if connection is None:
            raise ConfigError("the node stopped")
        events = connection.subscribe()
        connection.settimeout(None)
        self._event_connections.append(connection)
        threading.Thread(
            target=_read_events, args=(events, callback), name="torv-events", daemon=True
        ).start()

    def close(self) -> None:
        for connection in self._event_connections:
            connection.close()
        self._connection.close()


def _read_events(events: Iterator[dict[str, Any]], callback: EventCallback) -> None:
    try:
        for event in events:
            kind = event.get("type")
            if kind == "entry":
                callback(
                    ClientEvent(
                        "entry",
                        entry_id=event.get("id"),
                        author=event.get("author"),
                        entry_kind=event.get("kind"),
                    )
                )
            elif kind in ("peer-up", "peer-down"):
                callback(ClientEvent(str(kind), peer=event.get("identity")))
            elif kind == "sync":
                callback(
                    ClientEvent(
                        "sync",
                        feed=event.get("feed"),
                        peer=event.get("peer"),
                        have=int(event.get("have") or 0),
                        target=int(event.get("target") or 0),
                    )
                )
    except (ControlError, InvalidArgument, ValueError, TypeError):
        return  # the node went away or the connection was closed
