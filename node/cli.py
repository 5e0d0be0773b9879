"""The ``torv`` command line.

Every command takes ``--data-dir``; every command that prints data takes
``--json`` and then prints one JSON object per line. Errors are one line on
stderr and a non-zero exit status (1 for a torv error, 2 for a usage error);
``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from storage import CorruptStore, Entry, TorvError
from storage.errors import IdentityError, InvalidArgument

from .files import read_small_text
from .home import Home, default_data_dir
from .identity import feed_id_to_text, short_feed_id
from .local import LocalNode
from .render import entry_json, entry_text, short_entry_id

__all__ = ["main"]

_PASSPHRASE_FILE_MAX = 1024


class _Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def record(self, obj: dict[str, Any], text: str) -> None:
        print(json.dumps(obj, ensure_ascii=False) if self.as_json else text)


def _read_passphrase_file(path: str) -> str:
    try:
        text = read_small_text(
            Path(path), limit=_PASSPHRASE_FILE_MAX, what="the passphrase file", error=IdentityError
        )
    except FileNotFoundError:
        raise IdentityError(f"the passphrase file {path} does not exist") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


def _passphrase_source(args: argparse.Namespace) -> Callable[[], str | None]:
    def ask() -> str | None:
        if args.passphrase_file:
            return _read_passphrase_file(args.passphrase_file)
        if sys.stdin.isatty():
            return getpass.getpass("Passphrase for your torv key: ")
        return None

    return ask


def _home(args: argparse.Namespace) -> Home:
    return Home(
        (Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()).absolute()
    )


def _open(args: argparse.Namespace) -> LocalNode:
    return LocalNode.open(_home(args), passphrase=_passphrase_source(args))


def _written(node: LocalNode, out: _Output, entry: Entry, verb: str) -> None:
    stored = node.store.get(entry.id)
    out.record(entry_json(node, stored), f"{verb} {short_entry_id(entry.id)} (seq {entry.seq})")


# --- commands ---------------------------------------------------------------


def cmd_init(args: argparse.Namespace, out: _Output) -> None:
    home = _home(args)
    if home.key_path.exists():
        raise IdentityError(f"{home.path} already holds an identity; torv never replaces one")
    passphrase: str | None = None
    if args.passphrase_file:
        passphrase = _read_passphrase_file(args.passphrase_file)
        if not passphrase:
            raise IdentityError(
                f"the passphrase file {args.passphrase_file} is empty; "
                "use --no-passphrase for a key without one"
            )
    elif not args.no_passphrase and sys.stdin.isatty():
        print("A passphrase encrypts your secret key on disk (empty for none).", file=sys.stderr)
        passphrase = getpass.getpass("Passphrase: ") or None
        if passphrase and getpass.getpass("Again: ") != passphrase:
            raise InvalidArgument("the passphrases differ; nothing was created")
    key_file = LocalNode.init(home, passphrase=passphrase)
    if args.name:
        with LocalNode.open(home, passphrase=lambda: passphrase) as node:
            node.set_profile(name=args.name)
    feed = feed_id_to_text(key_file.public)
    out.record(
        {"feed": feed, "data_dir": str(home.path), "encrypted": key_file.encrypted},
        f"Created your identity {feed}\n"
        f"in {home.path}.\n"
        f"Your secret key is {home.key_path}: back it up. Whoever loses it loses the "
        f"identity; whoever copies it can post as you.",
    )


def cmd_id(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        info = node.store.feed_info(node.me)
        out.record(
            {
                "feed": feed_id_to_text(node.me),
                "short": short_feed_id(node.me),
                "name": info.name if info else None,
                "entries": info.latest_seq if info else 0,
                "encrypted": node.key_file.encrypted,
                "data_dir": str(node.home.path),
            },
            feed_id_to_text(node.me),
        )


def _write(
    node: LocalNode, method: str, offline: Callable[[], Entry | None], **params: Any
) -> Entry | None:
    """Write through the running node (published at once), or offline into the store."""
    from .control import ControlClient

    client = ControlClient.connect(node.home)
    if client is None:
        return offline()
    with client:
        result = client.call(method, **params)
    # The node committed the entry before it answered; read it from the store.
    return None if result is None else node.store.get(result["id"]).entry


def cmd_post(args: argparse.Namespace, out: _Output) -> None:
    text = (sys.stdin.read() if args.text == "-" else args.text).rstrip("\n")
    with _open(args) as node:
        reply = node.resolve_entry(args.reply).entry.id if args.reply else None
        entry = _write(
            node,
            "post",
            lambda: node.post(text, reply_to=reply, cw=args.cw),
            text=text,
            reply_to=reply,
            cw=args.cw,
        )
        assert entry is not None
        _written(node, out, entry, "replied" if reply else "posted")


def cmd_react(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        target = node.resolve_entry(args.entry).entry.id
        entry = _write(
            node, "react", lambda: node.react(target, args.emoji), entry=target, emoji=args.emoji
        )
        assert entry is not None
        _written(node, out, entry, "reacted")


def cmd_repost(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        target = node.resolve_entry(args.entry).entry.id
        entry = _write(node, "repost", lambda: node.repost(target), entry=target)
        assert entry is not None
        _written(node, out, entry, "reposted")


def _relation(
    verb: str, method: str, already: str
) -> Callable[[argparse.Namespace, _Output], None]:
    def command(args: argparse.Namespace, out: _Output) -> None:
        with _open(args) as node:
            feed = node.resolve_feed(args.feed)
            entry = _write(node, method, lambda: getattr(node, method)(feed), feed=feed)
            name = node.display_name(feed)
            if entry is None:
                out.record({"feed": feed_id_to_text(feed), "changed": False}, f"{already} {name}")
            else:
                _written(node, out, entry, f"{verb} {name}:")

    return command


def cmd_profile(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        entry = _write(
            node,
            "profile",
            lambda: node.set_profile(name=args.name, bio=args.bio),
            name=args.name,
            bio=args.bio,
        )
        assert entry is not None
        _written(node, out, entry, "profile updated:")


def cmd_delete(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        target = node.resolve_entry(args.entry).entry.id
        entry = _write(node, "delete", lambda: node.delete(target), entry=target)
        assert entry is not None
        _written(node, out, entry, "deleted:")


def _node_status(node: LocalNode) -> dict[str, Any] | None:
    from .control import ControlClient

    client = ControlClient.connect(node.home)
    if client is None:
        return None
    with client:
        status: dict[str, Any] = client.call("status")
    return status


def cmd_status(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        status = _node_status(node)
        feeds = node.store.feeds()
        entries = node.store.count()
        if status is None:
            out.record(
                {"running": False, "feed": feed_id_to_text(node.me), "entries": entries},
                f"{feed_id_to_text(node.me)}\nnode: not running (start it with `torv run`)\n"
                f"store: {entries} entries in {len(feeds)} feeds",
            )
            return
        syncing = [(feed, have, target) for feed, have, target in status["sync"] if have < target]
        lines = [
            feed_id_to_text(node.me),
            f"node: running, tcp {status['listen']}, dht udp {status['dht']}",
            f"peers: {len(status['peers'])}, DHT contacts: {status['dht_contacts']},"
            f" topics: {status['topics']}, feeds replicated: {status['scope']}",
            f"store: {entries} entries in {len(feeds)} feeds",
        ]
        for feed, have, target in syncing:
            done = have * 20 // max(target, 1)
            lines.append(
                f"  syncing {node.display_name(feed):<16} [{'#' * done}{'.' * (20 - done)}]"
                f" {have}/{target}"
            )
        out.record(
            {
                "running": True,
                "feed": feed_id_to_text(node.me),
                "listen": status["listen"],
                "dht": status["dht"],
                "peers": len(status["peers"]),
                "dht_contacts": status["dht_contacts"],
                "entries": entries,
                "syncing": [
                    {"feed": feed_id_to_text(feed), "have": have, "target": target}
                    for feed, have, target in syncing
                ],
            },
            "\n".join(lines),
        )


def cmd_peers(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        status = _node_status(node)
        if status is None:
            raise InvalidArgument("the node is not running (start it with `torv run`)")
        if not status["peers"] and not out.as_json:
            print("(no peers)")
        for peer in status["peers"]:
            out.record(
                {
                    "feed": feed_id_to_text(peer["identity"]),
                    "address": peer["address"],
                    "direction": "outbound" if peer["outbound"] else "inbound",
                    "uptime": round(peer["uptime"], 1),
                    "score": round(peer["score"], 2),
                },
                f"{node.display_name(peer['identity']):<18} {peer['address']:<22}"
                f" {'out' if peer['outbound'] else 'in ':<4} up {peer['uptime']:7.0f} s"
                f"  score {peer['score']:6.2f}",
            )


def cmd_petname(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        feed = node.resolve_feed(args.feed)
        node.home.add_petname(feed, args.name)
        out.record(
            {"feed": feed_id_to_text(feed), "petname": args.name},
            f"{feed_id_to_text(feed)} is now shown as {args.name}",
        )


def _print_entries(node: LocalNode, out: _Output, entries: Sequence[Any], show_cw: bool) -> None:
    if not entries and not out.as_json:
        print("(nothing here yet)")
    for index, stored in enumerate(entries):
        if out.as_json:
            out.record(entry_json(node, stored), "")
        else:
            if index:
                print()
            print(entry_text(node, stored, show_cw=show_cw))


def cmd_timeline(args: argparse.Namespace, out: _Output) -> None:
    from .views import Views

    with _open(args) as node:
        limit = args.limit or node.config.timeline_limit
        items, error = Views(node).ranked(args.algorithm or node.config.algorithm, limit)
        if error is not None:
            print(f"torv: {error}; showing latest instead", file=sys.stderr)
        if not items and not out.as_json:
            print("(nothing here yet)")
        for index, item in enumerate(items):
            if out.as_json:
                out.record({**entry_json(node, item.entry), "reason": item.reason}, "")
                continue
            if index:
                print()
            print(entry_text(node, item.entry, show_cw=args.show_cw))
            if args.why:
                print(f"  · why: {item.reason}")


def cmd_algorithms(args: argparse.Namespace, out: _Output) -> None:
    from . import algorithms

    home = _home(args)
    # This runs the owner's algorithm files without opening the node: the
    # directory they live in must be private as for every other command.
    home.check_private()
    if args.use:
        algorithms.load(args.use, home.path)
        home.set_setting("timeline", "algorithm", args.use)
        out.record({"selected": args.use}, f"your timeline now uses {args.use}")
        return
    chosen = home.load_config().algorithm
    for found in algorithms.available(home.path):
        if isinstance(found, algorithms.AlgorithmError):
            out.record(
                {"name": found.algorithm, "error": str(found)},
                f"  {found.algorithm:<12} does not load: {found}",
            )
            continue
        mark = "*" if found.name == chosen else " "
        where = str(found.path) if found.path else "built in"
        out.record(
            {
                "name": found.name,
                "description": found.description,
                "path": str(found.path) if found.path else None,
                "selected": found.name == chosen,
            },
            f"{mark} {found.name:<12} {found.description} ({where})",
        )


def cmd_mute(args: argparse.Namespace, out: _Output) -> None:
    from .views import Views

    with _open(args) as node:
        feed = node.resolve_feed(args.feed)
        Views(node).set_muted(feed, args.mute)
        verb = "muted" if args.mute else "unmuted"
        out.record(
            {"feed": feed_id_to_text(feed), verb: True},
            f"{verb} {node.display_name(feed)} (only on this machine)",
        )


def cmd_filter(args: argparse.Namespace, out: _Output) -> None:
    from .views import Views

    with _open(args) as node:
        config = node.config
        words = [] if args.clear else list(config.filter_words)
        tags = [] if args.clear else list(config.filter_tags)
        words += [word.casefold() for word in args.word or [] if word.casefold() not in words]
        tags += [
            tag.casefold().lstrip("#")
            for tag in args.tag or []
            if tag.casefold().lstrip("#") not in tags
        ]
        Views(node).set_filters(words, tags)
        out.record(
            {"words": words, "tags": tags},
            "hidden: "
            + (", ".join([*words, *(f"#{tag}" for tag in tags)]) or "nothing (no filters)"),
        )


def cmd_feed(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        feed = node.resolve_feed(args.feed)
        entries = node.store.feed(feed, limit=args.limit)
        info = node.store.feed_info(feed)
        if info is not None and info.forked and not out.as_json:
            print(f"! {node.display_name(feed)} has forked their log: entries conflict\n")
        _print_entries(node, out, entries, args.show_cw)


def cmd_thread(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        thread = node.thread(node.resolve_entry(args.entry).entry.id)
        if (not thread.items or thread.items[0].depth != 0) and not out.as_json:
            print(f"(the first post {short_entry_id(thread.root_id)} is not held here)\n")
        for index, item in enumerate(thread.items):
            if out.as_json:
                out.record({**entry_json(node, item.stored), "depth": item.depth}, "")
            else:
                if index:
                    print()
                print(entry_text(node, item.stored, indent=item.depth, show_cw=args.show_cw))


def cmd_export(args: argparse.Namespace, out: _Output) -> None:
    if args.output is None and sys.stdout.isatty():
        raise InvalidArgument("an export is binary: redirect it (torv export > FILE) or use -o")
    with _open(args) as node:
        feed = node.resolve_feed(args.feed) if args.feed else None
        if args.output is None:
            count = node.export(sys.stdout.buffer, feed)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "xb") as f:
                count = node.export(f, feed)
        print(f"exported {count} entries", file=sys.stderr)


def cmd_import(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        report = node.import_file(Path(args.file))
        out.record(
            {"stored": report.stored, "duplicates": report.duplicates, "forks": report.forks},
            f"imported {report.stored} entries ({report.duplicates} already held"
            + (f", {report.forks} forks" if report.forks else "")
            + ")",
        )


def cmd_verify(args: argparse.Namespace, out: _Output) -> None:
    with _open(args) as node:
        report = node.store.verify_all()
        out.record(
            {"ok": True, "entries": report.entries, "feeds": report.feeds},
            f"ok: {report.entries} entries in {report.feeds} feeds verify",
        )


def _node_options(args: argparse.Namespace, home: Home) -> Any:
    """The node's options from the command line, else ``config.toml``, else defaults."""
    from .home import parse_network_key
    from .records import parse_address
    from .runtime import DEFAULT_NETWORK_KEY, NodeOptions

    config = home.load_config()
    listen = parse_address(args.listen or config.listen or "0.0.0.0:4710", any_port=True)
    announce_text = args.announce or config.announce
    announce = parse_address(announce_text) if announce_text else None
    bootstrap = tuple(parse_address(text) for text in (args.bootstrap or config.bootstrap))
    if args.network_key:
        network_key = parse_network_key(args.network_key)
    else:
        network_key = config.network_key or DEFAULT_NETWORK_KEY
    return NodeOptions(
        listen=listen,
        announce=announce,
        dht_port=args.dht_port,
        bootstrap=bootstrap,
        network_key=network_key,
        square=args.square or config.square,
        hops=config.hops if args.hops is None else args.hops,
    )


def cmd_run(args: argparse.Namespace, out: _Output) -> None:
    import trio

    options = _node_options(args, _home(args))
    _log_to_stderr(args.debug)
    with _open(args) as local:
        trio.run(_run_node, local, options, args.json)


def _log_to_stderr(debug: bool) -> None:
    import logging

    logging.basicConfig(
        format="%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("torv").setLevel(logging.DEBUG if debug else logging.INFO)
    # The DHT package logs every unanswered datagram; that is normal on a network.
    for noisy in ("kademlia", "rpcudp"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.CRITICAL)


async def _run_node(local: LocalNode, options: Any, as_json: bool) -> None:
    import logging
    import signal

    import trio

    from gossip.peer import PeerInfo

    from .runtime import EntryAdded, PeerDown, PeerUp, open_node

    log = logging.getLogger("torv.run")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(local, options) as node, node.events() as events:
            # Sessions that came up while the node started (a seed answers
            # within milliseconds) were announced before this subscription:
            # they are the peers connected now (a session shows and is
            # announced in one step), and later ones come as events.
            connected = node.peers()
            status = node.status()
            line = {
                "event": "started",
                "feed": feed_id_to_text(node.me),
                "listen": "{}:{}".format(*status.listen),
                "dht": "{}:{}".format(*status.dht),
            }
            print(
                json.dumps(line)
                if as_json
                else (
                    f"torv node {line['feed']} listening on tcp {line['listen']}, "
                    f"dht udp {line['dht']}"
                ),
                flush=True,
            )

            def peer_up(info: PeerInfo) -> None:
                log.info(
                    "peer up %s at %s (%s)",
                    short_feed_id(info.identity),
                    info.address,
                    "outbound" if info.outbound else "inbound",
                )

            async def report() -> None:
                for info in connected:
                    peer_up(info)
                async for event in events:
                    if isinstance(event, PeerUp):
                        peer_up(event.info)
                    elif isinstance(event, PeerDown):
                        log.info("peer down %s: %s", short_feed_id(event.identity), event.reason)
                    elif isinstance(event, EntryAdded) and event.source is not None:
                        log.info(
                            "entry %s seq %d of %s from %s",
                            event.kind,
                            event.seq,
                            short_feed_id(event.author),
                            short_feed_id(event.source),
                        )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(report)
                async for signum in signals:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break


def _run_app(client: Any, note: str | None = None) -> None:
    # The one place where node/ reaches into ui/: the CLI opens the app.
    # Everything else imports one way (storage <- gossip <- node <- ui).
    import gc
    import signal

    from ui.app import make_app

    def stop(signum: int, frame: object) -> None:
        # A closed terminal or a `kill`: leave the app the way `q` does, so
        # the node stops cleanly (and the demo removes its directories).
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        app = make_app(client)
        if note is not None:
            app.notify(note, timeout=10)  # shown once the app runs
        # What exists by now (modules, the node) lasts as long as the app: kept
        # out of the collector's full passes, which then pause the app for a
        # few ms instead of some 50 ms (a keypress waits for them).
        gc.freeze()
        app.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_ui(args: argparse.Namespace, out: _Output) -> None:
    from dataclasses import replace

    from .client import AttachedClient, start_node
    from .control import ControlClient

    home = _home(args)
    note: str | None = None
    running = ControlClient.connect(home, timeout=5.0)
    if running is not None:
        running.close()
        if not args.attach:
            note = (
                f"A node is running with {home.path}: this app is attached to it,"
                " and leaving the app leaves the node running."
            )
            print(f"torv: a node is running with {home.path}; attaching to it", file=sys.stderr)
        args.attach = True
    if args.attach:
        client: Any = AttachedClient(home)
        try:
            _run_app(client, note)
        finally:
            client.close()
        return
    passphrase = _passphrase_source(args)
    if not home.key_path.exists():
        # The passphrase was just typed twice: do not ask for it again.
        chosen = _onboard(home)
        passphrase = lambda: chosen  # noqa: E731
    options = _node_options(args, home)
    with LocalNode.open(home, passphrase=passphrase) as local:
        # Unlock the key before the node starts, where a mistyped passphrase
        # may be typed again (the node would stop at the first).
        asks = local.key_file.encrypted and not args.passphrase_file and sys.stdin.isatty()
        retries = 2 if asks else 0
        while True:
            try:
                local.signing_key()
                break
            except IdentityError as exc:
                if retries == 0:
                    raise
                retries -= 1
                print(f"torv: {exc}; try again", file=sys.stderr)
        try:
            client = start_node(local, options)
        except InvalidArgument:
            if args.listen:
                raise
            # The default port is taken (another torv on this machine): any port will do.
            client = start_node(local, replace(options, listen=(options.listen[0], 0)))
        try:
            _run_app(client)
        finally:
            client.close()


def _onboard(home: Home) -> str | None:
    """First start: ask for a name, a passphrase and a seed in a small app;
    create the identity; return the passphrase (``None``: none)."""
    from ui.onboarding import make_onboarding_app

    answers = make_onboarding_app().run()
    if answers is None:
        raise SystemExit("torv: no identity was created")
    LocalNode.init(home, passphrase=answers.passphrase or None)
    if answers.seed:
        home.add_seed(answers.seed)
    with LocalNode.open(home, passphrase=lambda: answers.passphrase or None) as local:
        local.set_profile(name=answers.name)
    print(f"torv: created your identity in {home.path}", file=sys.stderr)
    return answers.passphrase or None


def cmd_demo(args: argparse.Namespace, out: _Output) -> None:
    import trio

    from .demo import run_demo_swarm

    if args.headless:
        report = trio.run(
            functools.partial(run_demo_swarm, args.nodes, args.seed, seconds=args.seconds)
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "nodes": report.nodes,
                        "seconds": report.seconds,
                        "entries": report.entries,
                        "posts": report.posts,
                        "expected": report.expected,
                        "delivered": report.delivered,
                        "latency_p50": report.percentile(0.5),
                        "latency_p99": report.percentile(0.99),
                    }
                )
            )
        else:
            print("\n".join(report.lines()))
        return
    _demo_app(args)


def _demo_app(args: argparse.Namespace) -> None:
    import trio

    from .client import BackgroundTrio, InProcessClient
    from .demo import Demo, run_demo_swarm

    async def main(task_status: trio.TaskStatus[tuple[Any, trio.Nursery]]) -> None:
        def ready(demo: Demo, nursery: trio.Nursery) -> None:
            task_status.started((demo.nodes[demo.viewer], nursery))

        await run_demo_swarm(args.nodes, args.seed, ready=ready)

    runner: BackgroundTrio[tuple[Any, trio.Nursery]] = BackgroundTrio(main, name="torv-demo")
    print(f"torv demo: starting {args.nodes} nodes on loopback...", file=sys.stderr)
    node, nursery = runner.start()
    client = InProcessClient(node, runner, nursery)
    try:
        _run_app(client)
    finally:
        client.close()


# --- parser -----------------------------------------------------------------


def _common_options(*, suppress: bool) -> argparse.ArgumentParser:
    # The options are accepted before and after the command. The copy on each
    # command has SUPPRESS defaults, or its None would overwrite a value given
    # before the command.
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        default=default(None),
        help="data directory (default: $TORV_HOME or the XDG data directory)",
    )
    common.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON, one per line"
    )
    common.add_argument(
        "--debug", action="store_true", default=default(False), help="show tracebacks of errors"
    )
    common.add_argument(
        "--passphrase-file",
        metavar="FILE",
        default=default(None),
        help="read the key's passphrase from the first line of FILE",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common_options(suppress=True)
    parser = argparse.ArgumentParser(
        prog="torv",
        description="torv: a peer-to-peer social network. Your posts, your log, your timeline.",
        parents=[_common_options(suppress=False)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[..., None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create your identity")
    p.add_argument("--name", help="your display name")
    p.add_argument("--no-passphrase", action="store_true", help="do not ask for a passphrase")
    add("id", cmd_id, "print your feed id")
    p = add("post", cmd_post, "post TEXT (- reads it from stdin)")
    p.add_argument("text")
    p.add_argument("--reply", metavar="ENTRY_ID", help="reply to this entry")
    p.add_argument("--cw", metavar="TEXT", help="content warning shown before the text")
    p = add("react", cmd_react, "react to an entry (a like by default)")
    p.add_argument("entry", metavar="ENTRY_ID")
    p.add_argument("emoji", nargs="?", default="♥")
    p = add("repost", cmd_repost, "repost an entry")
    p.add_argument("entry", metavar="ENTRY_ID")
    for name, method, verb, already in (
        ("follow", "follow", "following", "already following"),
        ("unfollow", "unfollow", "unfollowed", "not following"),
        ("block", "block", "blocked", "already blocking"),
        ("unblock", "unblock", "unblocked", "not blocking"),
    ):
        p = add(name, _relation(verb, method, already), f"{name} a feed")
        p.add_argument("feed", metavar="FEED", help="feed id or petname")
    p = add("profile", cmd_profile, "set your name and bio")
    p.add_argument("--name")
    p.add_argument("--bio")
    p = add("delete", cmd_delete, "delete one of your entries (its header stays)")
    p.add_argument("entry", metavar="ENTRY_ID")
    p = add("petname", cmd_petname, "give a feed your own name for it")
    p.add_argument("feed", metavar="FEED")
    p.add_argument("name")
    for name, func, help in (
        ("timeline", cmd_timeline, "your timeline: you and who you follow, newest first"),
        ("feed", cmd_feed, "one feed's entries, newest first"),
    ):
        p = add(name, func, help)
        if name == "feed":
            p.add_argument("feed", metavar="FEED", help="feed id, petname or me")
        p.add_argument("--limit", type=_positive, default=None if name == "timeline" else 50)
        p.add_argument("--show-cw", action="store_true", help="show text behind content warnings")
        if name == "timeline":
            p.add_argument(
                "--algorithm", metavar="NAME", help="rank with NAME (see: torv algorithms)"
            )
            p.add_argument("--why", action="store_true", help="say why each item is there")
    p = add("algorithms", cmd_algorithms, "the timeline algorithms you can choose (* chosen)")
    p.add_argument("--use", metavar="NAME", help="choose NAME for your timeline")
    for name, func, help in (
        ("mute", cmd_mute, "hide a feed everywhere, on this machine only"),
        ("unmute", cmd_mute, "show a muted feed again"),
    ):
        p = add(name, func, help)
        p.add_argument("feed", metavar="FEED", help="feed id or petname")
        p.set_defaults(mute=name == "mute")
    p = add("filter", cmd_filter, "hide posts with a word or a tag, on this machine only")
    p.add_argument("--word", action="append", metavar="WORD", help="hide posts containing WORD")
    p.add_argument("--tag", action="append", metavar="TAG", help="hide posts tagged TAG")
    p.add_argument("--clear", action="store_true", help="remove every filter first")
    p = add("thread", cmd_thread, "a post and its replies as a tree")
    p.add_argument("entry", metavar="ENTRY_ID")
    p.add_argument("--show-cw", action="store_true", help="show text behind content warnings")
    p = add("export", cmd_export, "write a feed's log to a file (yours by default)")
    p.add_argument("feed", metavar="FEED", nargs="?")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (must not exist)")
    p = add("import", cmd_import, "check and store an export file (all or nothing)")
    p.add_argument("file", metavar="FILE")
    add("verify", cmd_verify, "re-check every stored entry")
    add("status", cmd_status, "the node's state: running, peers, DHT, sync progress")
    add("peers", cmd_peers, "the running node's peers")
    p = add("run", cmd_run, "run the node: connect to peers and exchange entries")
    _add_node_options(p)
    p = add("ui", cmd_ui, "the terminal app, with the node running inside it")
    p.add_argument("--attach", action="store_true", help="use the node already running (torv run)")
    _add_node_options(p)
    p = add("demo", cmd_demo, "a live community of nodes on this machine, in the terminal app")
    p.add_argument(
        "--nodes", type=_demo_nodes, default=12, metavar="N", help="how many (default 12)"
    )
    p.add_argument("--seed", type=int, metavar="S", help="generate the same people again")
    p.add_argument("--headless", action="store_true", help="no app: run, then print what happened")
    p.add_argument(
        "--seconds",
        type=_positive,
        default=20,
        metavar="S",
        help="how long --headless runs (default 20)",
    )
    return parser


def _add_node_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", metavar="HOST:PORT", help="TCP address (default 0.0.0.0:4710)")
    p.add_argument(
        "--announce",
        metavar="HOST:PORT",
        help="the address other nodes should dial, if not the listen address (NAT, proxies)",
    )
    p.add_argument(
        "--dht-port", type=_port, metavar="PORT", help="UDP port of the DHT (default: as TCP)"
    )
    p.add_argument(
        "--bootstrap",
        action="append",
        metavar="HOST:PORT",
        help="a seed node to join through (repeatable)",
    )
    p.add_argument("--network-key", metavar="HEX", help="join another network (64 hex digits)")
    p.add_argument("--square", action="store_true", help="subscribe to all public posts")
    p.add_argument("--hops", type=int, choices=range(4), help="replicate follows of follows")


def _demo_nodes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 2 <= value <= 64:
        raise argparse.ArgumentTypeError("a demo has 2 to 64 nodes")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be from 1 to 10000")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is from 0 to 65535")
    return value


def _fail(message: str, code: int) -> NoReturn:
    print(f"torv: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``torv`` command line; exits with the command's status."""
    args = _parser().parse_args(argv)
    try:
        args.func(args, _Output(args.json))
        sys.stdout.flush()
    except TorvError as exc:
        if args.debug:
            traceback.print_exc()
        prefix = "the store is damaged: " if isinstance(exc, CorruptStore) else "error: "
        _fail(prefix + str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (torv timeline | head); that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None
    except FileExistsError as exc:
        _fail(f"error: {exc.filename} already exists", 1)
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        _fail(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 1)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
            raise SystemExit(70) from None
        _fail(f"internal error: {exc!r} (run again with --debug and report it)", 70)
