"""Honest gossip while one node is attacked: latency, time to cut off, memory.

Starts a swarm of honest nodes in this process with
:func:`node.testing.open_swarm` (all dial node 0, the target; every node
follows three authors, the target among them, so the target relays most
posts). The authors post ``--rate`` posts per second in all, without pause.
The run goes through phases of ``--seconds`` s each: first a quiet one (the
baseline), then one per attack, then a quiet one again. During an attack
phase a separate process (this script with ``--attacker``, built on
:mod:`node.hostile`) attacks the target without pause: as soon as the target
hangs up on one hostile peer, the next one connects under a fresh identity.

The attacks: garbage frames, garbage messages, an oversize message, forged
entries, out-of-chain entries (signed by the attacker, whose feed the target
follows), IWANT floods, GRAFT floods (in backoff, and repeated while in the
mesh), sync requests that are never read (the answers pile up), 200
slow-loris handshakes at once, ``--connections`` connections left in the
handshake, and as many completing handshakes (each a fresh identity).

Measured for each phase:

- honest propagation: from the author's ``post`` call to the ``EntryAdded``
  event at each follower (every node but the author), p50 and p99, and p99
  against the quiet baseline of the same run (target: within 2x);
- time to cut off: from a hostile peer's first misbehaviour to the target's
  hang-up, as the attacker saw it (target < 1 s): median and max over the
  hostile peers of the phase, and how many the target left connected; for
  the handshake attacks, from the connection to the hang-up;
- memory: the resident set of this process (the honest nodes) when the
  phase began, its peak during the phase (sampled every 50 ms) and at the
  end; the growth printed is peak minus start.

All honest nodes share one process and one GIL; the attacker has its own
process. The machine's cores are shared with whatever else runs: the CPU
figures are noisy, and the bench prints the share other processes took.

Run: ``.venv/bin/python bench/attack.py [--nodes N] [--seconds S] [--rate R]
[--connections C] [--only ATTACK ...] [--profile N]``
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import _gen  # noqa: F401  (puts this checkout on sys.path)
from _measure import machine_load
from gossip.handshake import HandshakeFailed
from gossip.router import RouterParams
from gossip.wire import feed_topic
from node.hostile import HostilePeer, connection_flood, hostile_peer
from node.runtime import EntryAdded, Node, NodeOptions
from node.testing import Swarm, open_swarm

P99_RATIO_TARGET = 2.0
CUT_OFF_TARGET_S = 1.0
#: Identities of the out-of-chain attacker: the target follows each.
UNLINKED_IDENTITIES = 32
SLOW_LORIS_PEERS = 200

# --- the attacker process ----------------------------------------------------------


def _unlinked_key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n % 256]) * 31 + b"\x5a")


@dataclass(slots=True)
class _Tally:
    """What the attacker saw: a cut-off delay per hostile peer, and those left on."""

    delays: list[float] = field(default_factory=list)
    left_connected: int = 0
    refused: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


Round = Callable[[HostilePeer, dict[str, Any]], Awaitable[object]]

ROUNDS: dict[str, Round] = {
    "garbage frames": lambda a, c: a.send_garbage_frames(3),
    "garbage messages": lambda a, c: a.send_garbage_messages(3),
    "oversize message": lambda a, c: a.send_oversize(),
    "forged entries": lambda a, c: a.send_forged(bytes.fromhex(c["followed"]), 16, first_seq=2),
    "out-of-chain entries": lambda a, c: a.send_unlinked(16),
    "iwant flood": lambda a, c: a.flood_iwant(
        [bytes.fromhex(i) for i in c["cached"]], 4 * RouterParams().max_iwant_heeded
    ),
    "graft flood in backoff": lambda a, c: a.flood_graft(c["topic"], 200),
    "graft flood in the mesh": lambda a, c: a.flood_graft(c["topic"], 2000, prune_first=False),
    "unread sync requests": lambda a, c: a.flood_want(bytes.fromhex(c["feed"]), 2000),
}


async def _hostile_rounds(attack: str, config: dict[str, Any], tally: _Tally) -> None:
    """One hostile peer after another, each with a fresh identity (the
    out-of-chain attacker cycles through identities the target follows)."""
    address = (config["host"], config["port"])
    network_key = bytes.fromhex(config["network_key"])
    attack_round = ROUNDS[attack]
    n = 0
    while True:
        identity = _unlinked_key(n % UNLINKED_IDENTITIES) if "chain" in attack else None
        n += 1
        try:
            async with hostile_peer(
                address,
                identity=identity,
                network_key=network_key,
                read=attack != "unread sync requests",
            ) as attacker:
                await attack_round(attacker, config)
                if not await attacker.wait_closed(config["patience"]):
                    tally.left_connected += 1
                    continue
                delay = attacker.disconnect_delay
                if delay is None:
                    tally.refused += 1  # hung up on before it misbehaved
                else:
                    tally.delays.append(delay)
        except (OSError, HandshakeFailed):
            tally.refused += 1  # during the handshake
            await trio.sleep(0.01)


async def _slow_loris(config: dict[str, Any], tally: _Tally) -> None:
    """``SLOW_LORIS_PEERS`` handshakes trickled at once, each replaced when dropped."""
    address = (config["host"], config["port"])
    network_key = bytes.fromhex(config["network_key"])

    async def one() -> None:
        while True:
            try:
                async with hostile_peer(
                    address, network_key=network_key, handshake=False
                ) as attacker:
                    opened = trio.current_time()
                    await attacker.slow_loris(0.1)
                    tally.delays.append(trio.current_time() - opened)
            except OSError:
                await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        for _ in range(SLOW_LORIS_PEERS):
            nursery.start_soon(one)


async def _crowd(config: dict[str, Any], tally: _Tally, *, handshake: bool) -> None:
    """``connections`` connections held open (in the handshake, or past it)."""
    address = (config["host"], config["port"])
    network_key = bytes.fromhex(config["network_key"])
    count = config["connections"]
    started = trio.current_time()
    async with connection_flood(
        address, count, handshake=handshake, network_key=network_key
    ) as flood:
        try:
            await flood.wait_opened()
            tally.notes["all opened in"] = f"{trio.current_time() - started:.2f} s"
            await trio.sleep_forever()
        finally:
            tally.notes.update(
                opened=flood.opened,
                failed=flood.failed,
                handshakes=flood.handshakes,
                closed_by_target=flood.closed_by_target,
            )


async def _attacker_main(attack: str, config: dict[str, Any]) -> None:
    tally = _Tally()
    with trio.move_on_after(config["seconds"]):
        if attack == "slow loris":
            await _slow_loris(config, tally)
        elif attack == "connections in the handshake":
            await _crowd(config, tally, handshake=False)
        elif attack == "sybil sessions":
            await _crowd(config, tally, handshake=True)
        else:
            await _hostile_rounds(attack, config, tally)
    print(
        json.dumps(
            {
                "delays": tally.delays,
                "left_connected": tally.left_connected,
                "refused": tally.refused,
                "notes": tally.notes,
            }
        ),
        flush=True,
    )


# --- the honest swarm ------------------------------------------------------------------


def _rss_mb() -> float:
    """This process's resident set now, in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(slots=True)
class _Phase:
    name: str
    made: dict[bytes, tuple[int, float]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    expected: int = 0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    rss_end: float = 0.0
    cpu_s: float = 0.0
    other_share: float | None = None
    attacker: dict[str, Any] = field(default_factory=dict)
    posted: bool = False
    all_in: trio.Event = field(default_factory=trio.Event)

    def note_delivery(self, latency: float) -> None:
        self.latencies.append(latency)
        if self.posted and len(self.latencies) >= self.expected:
            self.all_in.set()


@dataclass(slots=True)
class _Run:
    """The phase under way, shared with the listeners."""

    phase: _Phase | None = None


async def _listen(
    node: Node, index: int, run: _Run, *, task_status: trio.TaskStatus[None]
) -> None:
    async with node.events() as events:
        task_status.started()
        async for event in events:
            phase = run.phase
            if phase is None or not isinstance(event, EntryAdded):
                continue
            made = phase.made.get(event.entry_id)
            if made is not None and made[0] != index:
                phase.note_delivery(trio.current_time() - made[1])


async def _post(node: Node, author: int, number: int, phase: _Phase, followers: int) -> None:
    called = trio.current_time()
    entry = await node.post(f"phase {phase.name}, post {number}")
    # Recorded before any follower can have it: post() only queues the messages.
    phase.made[entry.id] = (author, called)
    phase.expected += followers


async def _publish(
    swarm: Swarm, authors: Sequence[int], phase: _Phase, rate: float, seconds: float
) -> None:
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for number in range(round(rate * seconds)):
            await trio.sleep_until(start + number / rate)
            author = authors[number % len(authors)]
            followers = len(swarm.nodes) - 1
            nursery.start_soon(_post, swarm.nodes[author], author, number, phase, followers)


async def _sample_rss(phase: _Phase) -> None:
    while True:
        phase.rss_peak = max(phase.rss_peak, _rss_mb())
        await trio.sleep(0.05)


async def _attack(attack: str, config: dict[str, Any], phase: _Phase) -> None:
    """Run the attacker process for the phase; keep what it reports."""
    command = [sys.executable, __file__, "--attacker", attack, json.dumps(config)]
    result = await trio.run_process(command, capture_stdout=True, check=False)
    lines = result.stdout.decode().strip().splitlines()
    if result.returncode != 0 or not lines:
        phase.attacker = {"error": f"the attacker process ended with {result.returncode}"}
    else:
        phase.attacker = json.loads(lines[-1])


async def _run_phase(
    swarm: Swarm,
    authors: Sequence[int],
    run: _Run,
    name: str,
    args: argparse.Namespace,
    config: dict[str, Any] | None,
) -> _Phase:
    phase = _Phase(name, rss_start=_rss_mb())
    phase.rss_peak = phase.rss_start
    run.phase = phase
    profile = cProfile.Profile() if args.profile and config is not None else None
    with machine_load() as load, profile or contextlib.nullcontext():
        async with trio.open_nursery() as sampling:
            sampling.start_soon(_sample_rss, phase)
            async with trio.open_nursery() as nursery:
                if config is not None:
                    nursery.start_soon(_attack, name, config, phase)
                await _publish(swarm, authors, phase, args.rate, args.seconds)
                phase.posted = True
                if len(phase.latencies) >= phase.expected:
                    phase.all_in.set()
                # Late deliveries of this phase still count, for a moment.
                with trio.move_on_after(args.drain):
                    await phase.all_in.wait()
            sampling.cancel_scope.cancel()
    phase.cpu_s, phase.other_share = load.own_cpu_s, load.other_share
    if profile is not None:
        print(f"profile of the honest nodes' thread during {name}:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    phase.rss_end = _rss_mb()
    run.phase = None
    return phase


def _p99_ms(phase: _Phase) -> float | None:
    return _percentile(phase.latencies, 0.99) * 1000 if phase.latencies else None


def _print_phase(phase: _Phase, baseline_ms: float | None) -> None:
    """One phase's figures; the p99 ratio is against ``baseline_ms``."""
    p99 = _p99_ms(phase)
    if p99 is None:
        latency = "no deliveries"
    else:
        p50 = _percentile(phase.latencies, 0.5) * 1000
        latency = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        if baseline_ms:
            ratio = p99 / baseline_ms
            verdict = "ok" if ratio <= P99_RATIO_TARGET else "ABOVE TARGET"
            latency += f" = {ratio:.1f}x quiet ({verdict})"
    growth = phase.rss_peak - phase.rss_start
    others = f", other processes {phase.other_share:.0%}" if phase.other_share is not None else ""
    print(
        f"{phase.name}: {latency}; delivered {len(phase.latencies)}/{phase.expected};"
        f" rss {phase.rss_start:.0f} MB -> peak {phase.rss_peak:.0f} MB (+{growth:.1f} MB),"
        f" end {phase.rss_end:.0f} MB; cpu {phase.cpu_s:.1f} s{others}",
        flush=True,
    )
    attacker = phase.attacker
    if not attacker:
        return
    if "error" in attacker:
        print(f"    attacker: {attacker['error']}", flush=True)
        return
    delays = attacker["delays"]
    parts = []
    if delays:
        worst = max(delays)
        verdict = "ok" if worst < CUT_OFF_TARGET_S else "ABOVE TARGET"
        parts.append(
            f"cut off after median {statistics.median(delays) * 1000:.1f} ms,"
            f" max {worst * 1000:.1f} ms over {len(delays)} hostile peers"
            f" (target < {CUT_OFF_TARGET_S:g} s: {verdict})"
        )
    if attacker["left_connected"]:
        parts.append(f"{attacker['left_connected']} left connected")
    if attacker["refused"]:
        parts.append(f"{attacker['refused']} refused before misbehaving")
    parts.extend(f"{key} {value}" for key, value in attacker["notes"].items())
    print("    attacker: " + "; ".join(parts), flush=True)


def _summary(attacks: Sequence[_Phase], quiet: Sequence[_Phase]) -> None:
    baseline = statistics.median(p for p in map(_p99_ms, quiet) if p is not None)
    print(
        f"\nsummary (baseline: median p99 of the {len(quiet)} quiet phases,"
        f" {baseline:.1f} ms; targets: p99 within {P99_RATIO_TARGET:g}x, cut off"
        f" < {CUT_OFF_TARGET_S:g} s)"
    )
    print(f"{'attack':32} {'p99 ms':>8} {'x quiet':>8} {'cut off max':>12} {'rss +MB':>8}")
    for phase in attacks:
        p99 = _p99_ms(phase)
        delays = phase.attacker.get("delays") or []
        cut = f"{max(delays) * 1000:.0f} ms" if delays else "-"
        ratio = f"{p99 / baseline:.1f}" if p99 is not None else "-"
        growth = phase.rss_peak - phase.rss_start
        print(
            f"{phase.name:32} {p99 or 0:8.1f} {ratio:>8} {cut:>12} {growth:8.1f}",
        )


ATTACKS = (
    *ROUNDS,
    "slow loris",
    "connections in the handshake",
    "sybil sessions",
)


async def _swarm_main(args: argparse.Namespace) -> None:
    options = NodeOptions(control=False, handshake_rate=args.handshake_rate)
    async with open_swarm(args.nodes, options=options) as swarm:
        target = swarm.nodes[0]
        authors = [0, 1, 2]
        for node in swarm.nodes:
            for author in authors:
                if node is not swarm.nodes[author]:
                    await node.follow(swarm.nodes[author].me)
        for n in range(UNLINKED_IDENTITIES):
            await target.follow(_unlinked_key(n).public_key().public_bytes_raw())
        # Enough of the target's own feed that a sync request is a full batch.
        for n in range(300):
            await target.post(f"history {n} " + "x" * 200)
        run = _Run()
        async with trio.open_nursery() as nursery:
            for index, node in enumerate(swarm.nodes):
                await nursery.start(_listen, node, index, run)
            host, port = target.listen_address
            print(
                f"{args.nodes} honest nodes in this process; target: node 0 at {host}:{port};"
                f" authors {authors} post {args.rate:g}/s in all; phases of {args.seconds:g} s,"
                " a quiet one before each attack and one at the end",
                flush=True,
            )
            quiet: list[_Phase] = []
            attacked: list[_Phase] = []

            def baseline() -> float | None:
                figures = [p for p in map(_p99_ms, quiet) if p is not None]
                return statistics.median(figures) if figures else None

            for attack in [a for a in ATTACKS if not args.only or a in args.only]:
                quiet.append(await _run_phase(swarm, authors, run, "quiet", args, None))
                _print_phase(quiet[-1], baseline())
                bait = await target.post("bait for IWANT")
                config = {
                    "host": host,
                    "port": port,
                    "network_key": target.options.network_key.hex(),
                    "seconds": args.seconds,
                    "patience": 5.0,
                    "followed": swarm.nodes[1].me.hex(),
                    "topic": feed_topic(swarm.nodes[1].me),
                    "feed": target.me.hex(),
                    "cached": [bait.id.hex(), *[i.hex() for i in list(quiet[-1].made)[-64:]]],
                    "connections": args.connections,
                }
                attacked.append(await _run_phase(swarm, authors, run, attack, args, config))
                _print_phase(attacked[-1], baseline())
            quiet.append(await _run_phase(swarm, authors, run, "quiet", args, None))
            _print_phase(quiet[-1], baseline())
            print(
                f"target after all: {len(target.peers())} sessions;"
                f" router state {target.router.stats()}"
            )
            _summary(attacked, quiet)
            nursery.cancel_scope.cancel()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--attacker":
        trio.run(_attacker_main, sys.argv[2], json.loads(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=20.0, help="honest posts per second")
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument(
        "--handshake-rate", type=float, default=NodeOptions().handshake_rate, help="of the nodes"
    )
    parser.add_argument("--only", nargs="*", choices=ATTACKS, help="run only these attacks")
    parser.add_argument(
        "--profile", type=int, default=0, help="print the N costliest functions of each attack"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kademlia").setLevel(logging.ERROR)
    started = time.perf_counter()
    trio.run(_swarm_main, args)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
