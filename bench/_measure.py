"""Small measuring helpers shared by the benches (Linux; harmless elsewhere)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Load", "machine_load", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _busy_and_total() -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as stat:
            fields = [int(n) for n in stat.readline().split()[1:]]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def _descendants_cpu_s() -> float:
    """CPU seconds used so far by the live processes this one started, and
    theirs (the verify helpers, a second node's process); 0 where unknown."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [os.getpid()]
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    for child in children.read().split():
                        if int(child) not in seen:
                            seen.add(int(child))
                            pending.append(int(child))
            except OSError:
                continue
    for pid in seen:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # The command may hold spaces: fields count from after its ')'.
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _own_cpu_s() -> float:
    """CPU seconds of this process, its live descendants and the children it reaped."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + _descendants_cpu_s() + reaped.ru_utime + reaped.ru_stime


@dataclass(slots=True)
class Load:
    """CPU use while a block ran: by this process (with the processes it
    started, such as the store's verify helpers), and by everything else."""

    own_cpu_s: float = 0.0
    other_share: float | None = None  # of all cores; None where unknown

    def note(self) -> str:
        """A warning when other processes took CPU meanwhile (the ones this
        process started count as its own)."""
        share = self.other_share
        if share is None or share < 0.05:
            return ""
        return f" [other processes used {share:.0%} of the CPU meanwhile]"


@contextmanager
def machine_load() -> Iterator[Load]:
    """Measure the CPU this process (and what it started) used in the block,
    and what others used."""
    load = Load()
    before = _busy_and_total()
    cpu = _own_cpu_s()
    try:
        yield load
    finally:
        load.own_cpu_s = _own_cpu_s() - cpu
        after = _busy_and_total()
        if before is not None and after is not None and after[1] > before[1]:
            others = after[0] - before[0] - load.own_cpu_s
            load.other_share = max(0.0, others / (after[1] - before[1]))
