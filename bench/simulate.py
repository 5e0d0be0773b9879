"""Scale by simulation: the node's gossip router and sync planner at 1,000 to 10,000 nodes.

Every node runs the real :class:`gossip.router.Router` (default
:class:`~gossip.router.RouterParams`), one real :class:`gossip.sync.SyncPlanner`
per connection, :func:`gossip.sync.answer` and a :class:`gossip.sync.GapBuffer`,
driven as ``node.runtime`` drives them, in a discrete-event simulation on a
simulated clock (``bench/_sim``; its module docstrings say what is modelled
and how). Entries are real signed posts; sizes are ``encode_message`` sizes.

The network: a follow graph with communities and heavy-tailed follower counts
(fitness-weighted choice: preferential attachment in one step), every node
subscribed to its own feed's topic and those of the feeds it follows, one-way
link latencies of 10 to 150 ms by distance, and the node's connection manager
(provider lookups with the DHT's bounded provider sets, a peer bound, rescue
dials for feeds with an empty mesh, at most 256 inbound sessions). Meshes form
by the routers' own GRAFT/PRUNE and heartbeats.

A run: ``--warmup`` seconds to connect and form meshes, ``--duration``
seconds of posts (``--rate`` per second, authors weighted by the square root
of their follower counts), ``--drain`` seconds for late deliveries and sync.
Scenarios:

- ``quiet``: everyone online, everyone honest;
- ``churn``: while posting, ``--churn`` of the nodes are offline at any time
  (offline spans of ``--offline-mean`` seconds on average); a node that comes
  back restarts (a new router and gap buffer, its store kept), reconnects and
  syncs what it missed with the planners; all are back when posting stops;
- ``droppers``: ``--droppers`` of the nodes subscribe and graft as usual but
  send no entry (neither forwarded nor answering IWANT) and answer no sync
  request; they neither post nor count as subscribers.

Printed per run: delivery to subscribers (target 100%), hops p50/p99 (target
p99 <= 8), latency p50/p99 in simulated time, redundancy (copies received per
delivered entry minus one, target <= 3), bytes per delivered entry (and per
node per second), and the connection structure when posting starts (see
``bench/_sim/report.py``). CPU seconds, wall seconds and peak memory are the
simulator's own cost, on a machine whose 2 cores are shared: noisy.

Run: ``.venv/bin/python bench/simulate.py [--nodes N] [--scenario quiet|churn|droppers|all]``
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import os
import platform
import pstats
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# The bench runs from a checkout (`.venv/bin/python bench/simulate.py`).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench._sim.engine import SCENARIOS, SimConfig, Simulation  # noqa: E402
from bench._sim.report import format_result, measure  # noqa: E402
from gossip.router import RouterParams  # noqa: E402


def run_one(config: SimConfig, profile: int = 0) -> str:
    """Run one scenario; the lines to print (figures, then the simulator's cost)."""
    wall = time.perf_counter()
    cpu = time.process_time()
    profiler = cProfile.Profile() if profile else None
    sim = Simulation(config)

    def progress(now: float) -> None:
        print(
            f"  [{config.scenario}] simulated {now:.0f} s, {sim.events} events, "
            f"{time.process_time() - cpu:.0f} s CPU",
            file=sys.stderr,
            flush=True,
        )

    if profiler is not None:
        profiler.enable()
    sim.run(progress)
    if profiler is not None:
        profiler.disable()
    result = measure(sim)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        format_result(result),
        f"  simulator  {time.process_time() - cpu:.0f} s CPU, "
        f"{time.perf_counter() - wall:.0f} s wall, peak RSS {rss:.0f} MB "
        f"({config.warmup:.0f} + {config.duration:.0f} + {config.drain:.0f} simulated s)",
    ]
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime")
        stats.print_stats(profile)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of posting")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before posting")
    parser.add_argument("--drain", type=float, default=20.0, help="seconds after posting")
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second in all")
    parser.add_argument("--churn", type=float, default=0.2, help="share offline at a time")
    parser.add_argument("--offline-mean", type=float, default=10.0, help="mean offline span")
    parser.add_argument("--droppers", type=float, default=0.1, help="share of droppers")
    parser.add_argument(
        "--max-peers",
        type=int,
        default=None,
        help="the connection manager's peer bound while a mesh is thin"
        " (default: the node's, twice its target of 8)",
    )
    parser.add_argument(
        "--no-author-dials",
        dest="author_dials",
        action="store_false",
        help="for comparison, the connection manager's earlier rule: fill the meshes of"
        " followed feeds only, not the node's own after it posts",
    )
    parser.add_argument(
        "--d-unchoked-cold",
        type=int,
        default=None,
        metavar="N",
        help="pushers kept in a feed topic before its first entry (0: all; default: the router's)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="scenarios run at once (processes) with --scenario all"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print the N costliest functions"
    )
    args = parser.parse_args()
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    params = RouterParams()
    if args.d_unchoked_cold is not None:
        params = dataclasses.replace(params, d_unchoked_cold=args.d_unchoked_cold)
    try:
        configs = [
            SimConfig(
                nodes=args.nodes,
                seed=args.seed,
                scenario=scenario,
                warmup=args.warmup,
                duration=args.duration,
                drain=args.drain,
                rate=args.rate,
                churn=args.churn,
                offline_mean=args.offline_mean,
                droppers=args.droppers,
                max_peers=args.max_peers,
                author_dials=args.author_dials,
                params=params,
            )
            for scenario in scenarios
        ]
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"torv simulation, {datetime.date.today()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    if args.jobs > 1 and len(configs) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for text in pool.map(run_one, configs):
                print(text, flush=True)
    else:
        for config in configs:
            print(run_one(config, args.profile), flush=True)


if __name__ == "__main__":
    main()
