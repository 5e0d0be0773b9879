"""DHT lookups on a loopback network of real torv DHT nodes.

Starts N nodes (default 200), each on its own island (an asyncio loop in a
thread, as in a real node) with its own UDP port on 127.0.0.1; each joins
through a few nodes that started before it. Every node announces its
address record; then random nodes look up random other nodes' records.
Prints the lookup success rate (target 100%) and lookup time p50/p99, plus
the start-up and announce times and the peak RSS of the process.

Run: ``.venv/bin/python bench/dht.py [--nodes N] [--lookups N]``
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import _gen  # noqa: F401  (puts this checkout on sys.path)
from _measure import peak_rss_mb
from node.discovery import Discovery, open_discovery


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _run(count: int, lookups: int, seed: int) -> None:
    rng = random.Random(seed)
    async with contextlib.AsyncExitStack() as stack:
        started = time.perf_counter()
        nodes: list[Discovery] = []
        for _ in range(count):
            key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
            node = await stack.enter_async_context(open_discovery(key, max_contacts_per_ip=None))
            if nodes:
                seeds = rng.sample(nodes, min(3, len(nodes)))
                await node.bootstrap([seed_node.address for seed_node in seeds])
            nodes.append(node)
        joined = time.perf_counter() - started
        print(f"started and joined {count} nodes in {joined:.1f} s")

        started = time.perf_counter()
        stored = 0
        async with trio.open_nursery() as nursery:

            async def announce(node: Discovery) -> None:
                nonlocal stored
                ok = await node.announce([f"{node.address[0]}:{node.address[1]}"])
                stored += ok

            for node in nodes:
                nursery.start_soon(announce, node)
        print(
            f"announced {count} address records in {time.perf_counter() - started:.1f} s"
            f" ({stored} stored on at least one node)"
        )

        times: list[float] = []
        found = 0
        for _ in range(lookups):
            asker, target = rng.sample(nodes, 2)
            began = time.perf_counter()
            record = await asker.find_peer(target.identity)
            times.append((time.perf_counter() - began) * 1000)
            expected = f"{target.address[0]}:{target.address[1]}"
            found += record is not None and record.addresses == (expected,)
        contacts = statistics.mean([len(await node.contacts()) for node in nodes])
        print(f"lookups: {found}/{lookups} found ({100 * found / lookups:.1f}%, target 100%)")
        p50, p99 = _percentile(times, 0.5), _percentile(times, 0.99)
        print(
            f"lookup time: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(times):.1f} ms;"
            f" mean routing-table size {contacts:.1f}"
        )
        print(f"peak RSS: {peak_rss_mb():.0f} MB for {count} nodes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    trio.run(_run, args.nodes, args.lookups, args.seed)


if __name__ == "__main__":
    main()
