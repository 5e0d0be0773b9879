"""Long fuzz runs of torv's decoders of untrusted bytes (``docs/fuzzing.md``).

Runs one target of ``tests/fuzz/targets.py`` (the same functions the test
suite fuzzes briefly) for ``--runs`` inputs and prints the inputs run, the
rate, the exceptions found (none expected) and the resident memory at the
start and the end, to show that it stays bounded.

Engines:

- ``atheris`` (used when importable; ``pip install -e '.[fuzz]'``):
  coverage-guided libFuzzer over instrumented torv code, seeded with the
  target's valid inputs, mutating with libFuzzer's own mutations and
  torv's structure-aware ones (``tests/fuzz/mutate.py``) in turn.
- ``builtin``: a seeded loop of random bytes and structure-aware mutations
  of the valid inputs and of mutated inputs that decoded, without coverage.

An input that raises anything but the target's documented error, or runs
longer than ``--hang-seconds``, is a finding: the first input of each kind is
saved under ``--crash-dir`` and the run goes on.

Run::

    .venv/bin/python bench/fuzz/run.py --target entry --runs 1000000
    .venv/bin/python bench/fuzz/run.py --target all --runs 1000000   # one after another
    .venv/bin/python bench/fuzz/run.py --list
    .venv/bin/python bench/fuzz/run.py --target entry --replay /tmp/torv-fuzz-crashes/entry/*
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

try:
    import atheris  # type: ignore[import-untyped]
except ImportError:  # the optional extra is not installed: the builtin loop runs
    atheris = None


class Hang(Exception):
    """An input ran longer than the hang limit."""


def rss_mib() -> tuple[float, float]:
    """Resident memory now and at its peak, in MiB (``/proc/self/status``,
    else the peak from ``getrusage`` for both)."""
    fields: dict[str, float] = {}
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    peak = fields.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return fields.get("VmRSS", peak), peak


def _memory() -> str:
    now, peak = rss_mib()
    return f"{now:.1f} MiB (peak {peak:.1f} MiB)"


@dataclass
class Tally:
    """What a run has seen so far."""

    runs: int = 0
    refused: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    slowest: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    last_report: float = field(default_factory=time.perf_counter)


class Checker:
    """Runs one input through the target and records what came out."""

    def __init__(
        self,
        run: Callable[[bytes], None],
        allowed: tuple[type[BaseException], ...],
        crash_dir: Path,
        hang_seconds: float,
        report_every: float,
    ) -> None:
        self.run = run
        self.allowed = allowed
        self.crash_dir = crash_dir
        self.hang_seconds = hang_seconds
        self.report_every = report_every
        self.tally = Tally()
        self.accepted: list[bytes] = []
        signal.signal(signal.SIGALRM, self._alarm)

    @staticmethod
    def _alarm(_signum: int, _frame: FrameType | None) -> None:
        raise Hang("the input ran longer than the hang limit")

    def __call__(self, data: bytes) -> bool:
        """Run ``data``; True if the target accepted it."""
        tally = self.tally
        tally.runs += 1
        accepted = False
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, self.hang_seconds)
        try:
            self.run(data)
            accepted = True
        except self.allowed:
            tally.refused += 1
        except Exception as exc:  # every other exception is what we look for
            self._record(data, exc)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - start
        tally.slowest = max(tally.slowest, elapsed)
        if start - tally.last_report >= self.report_every:
            tally.last_report = start
            rate = tally.runs / (start - tally.started)
            print(
                f"  {tally.runs} inputs, {rate:.0f}/s, findings {sum(tally.findings.values())},"
                f" RSS {_memory()}",
                flush=True,
            )
        return accepted

    def _record(self, data: bytes, exc: Exception) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = f"{type(exc).__name__} at {where}"
        count = self.tally.findings.get(key, 0)
        self.tally.findings[key] = count + 1
        if count == 0:
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            path = self.crash_dir / f"crash-{hashlib.sha256(data).hexdigest()[:16]}"
            path.write_bytes(data)
            print(f"FINDING {key}: {exc!r}; input saved to {path}", flush=True)
            traceback.print_exception(exc, limit=-4, file=sys.stdout)


def summary(checker: Checker, name: str) -> None:
    tally = checker.tally
    elapsed = time.perf_counter() - tally.started
    found = sum(tally.findings.values())
    print(f"inputs run: {tally.runs}")
    print(f"time: {elapsed:.1f} s; inputs/s: {tally.runs / elapsed:.0f}")
    print(
        f"refused with the documented error: {tally.refused}"
        f" ({100 * tally.refused / max(tally.runs, 1):.1f} %);"
        f" accepted: {tally.runs - tally.refused - found}"
    )
    print(f"exceptions found: {found}")
    for key, count in sorted(tally.findings.items()):
        print(f"  {count} x {key}")
    print(f"slowest input: {1000 * tally.slowest:.1f} ms")
    print(f"RSS at end: {_memory()}")
    print(f"{name}: {'FAILED' if found else 'ok'}", flush=True)


def run_builtin(
    checker: Checker, target: Any, corpus: Sequence[bytes], runs: int, seed: int, max_len: int
) -> None:
    """Random bytes and structure-aware mutations, without coverage feedback.

    Mutated inputs that the target accepts join a bounded pool of parents,
    so that mutations build on inputs that get past the first checks.
    """
    from tests.fuzz.mutate import mutate

    rng = random.Random(seed)
    pool: list[bytes] = []
    for data in corpus:
        checker(data)
    while checker.tally.runs < runs:
        if rng.randrange(10) == 0:
            data = rng.randbytes(rng.randrange(min(max_len, 512) + 1))
        else:
            parents = pool if pool and rng.randrange(2) else corpus
            data = mutate(rng.choice(parents), target.layout, rng, corpus)[:max_len]
        if checker(data) and data not in corpus:
            if len(pool) < 256:
                pool.append(data)
            else:
                pool[rng.randrange(len(pool))] = data


def run_atheris(
    checker: Checker,
    target: Any,
    corpus: Sequence[bytes],
    runs: int,
    seed: int,
    max_len: int,
    stack: contextlib.ExitStack,
) -> None:
    """libFuzzer through atheris; prints the summary and closes ``stack``
    itself at the last input (libFuzzer ends the process without returning)."""
    from tests.fuzz.mutate import mutate

    corpus_dir = Path(tempfile.mkdtemp(prefix=f"torv-fuzz-{target.name}-"))
    for data in corpus:
        (corpus_dir / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)

    def one(data: bytes) -> None:
        checker(data)
        if checker.tally.runs == runs:
            summary(checker, target.name)
            shutil.rmtree(corpus_dir, ignore_errors=True)
            stack.close()
            os._exit(1 if checker.tally.findings else 0)

    def mutator(data: bytes, max_size: int, mutation_seed: int) -> bytes:
        if mutation_seed % 2:
            return bytes(atheris.Mutate(data, max_size))
        return mutate(data, target.layout, random.Random(mutation_seed), corpus)[:max_size]

    argv = [
        sys.argv[0],
        f"-runs={runs}",
        f"-seed={seed or 1}",
        f"-max_len={max_len}",
        "-print_final_stats=0",
        "-close_fd_mask=0",
        str(corpus_dir),
    ]
    atheris.Setup(argv, one, custom_mutator=mutator)
    atheris.Fuzz()


def fuzz_one(args: argparse.Namespace) -> int:
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris is not None else "builtin"
    if engine == "atheris" and atheris is None:
        print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    if engine == "atheris" and not args.replay:
        with atheris.instrument_imports(include=["storage", "gossip", "node"]):
            from tests.fuzz.targets import TARGETS
    else:
        from tests.fuzz.targets import TARGETS
    if args.target not in TARGETS:
        print(f"unknown target {args.target!r}; --list names them", file=sys.stderr)
        return 2
    target = TARGETS[args.target]
    if args.replay:
        return replay(target, [Path(path) for path in args.replay])
    print(f"target: {target.name}: {target.covers}")
    print(f"allowed errors: {', '.join(e.__name__ for e in target.allowed) or 'none'}")
    print(
        f"engine: {engine}"
        + (" (atheris not importable)" if engine == "builtin" and atheris is None else "")
    )
    print(f"runs: {args.runs}; seed: {args.seed}; max input: {args.max_len} bytes")
    with contextlib.ExitStack() as stack:
        checker = Checker(
            target.start(stack),
            target.allowed,
            Path(args.crash_dir) / target.name,
            args.hang_seconds,
            args.report_every,
        )
        corpus = target.corpus()
        print(f"seed corpus: {len(corpus)} valid inputs")
        print(f"RSS at start: {_memory()}", flush=True)
        checker.tally = Tally()
        if engine == "atheris":
            run_atheris(checker, target, corpus, args.runs, args.seed, args.max_len, stack)
        else:
            run_builtin(checker, target, corpus, args.runs, args.seed, args.max_len)
        summary(checker, target.name)
        return 1 if checker.tally.findings else 0


def replay(target: Any, paths: Sequence[Path]) -> int:
    """Run saved inputs once each and show what each raised."""
    found = 0
    inputs = [(path, path.read_bytes()) for path in paths]
    with contextlib.ExitStack() as stack:
        run = target.start(stack)
        for path, data in inputs:
            try:
                run(data)
                print(f"{path}: accepted")
            except target.allowed as exc:
                print(f"{path}: refused: {exc!r}")
            except Exception:
                found += 1
                print(f"{path}: FINDING")
                traceback.print_exc(file=sys.stdout)
    return 1 if found else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="all", help="a target name, or all (one by one)")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    parser.add_argument("--max-len", type=int, default=8192, help="longest input, bytes")
    parser.add_argument("--hang-seconds", type=float, default=10.0)
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--crash-dir", default=str(Path(tempfile.gettempdir()) / "torv-fuzz-crashes")
    )
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run saved inputs once")
    args = parser.parse_args(argv)
    if args.target != "all" and not args.list:
        # Imported there, under atheris's instrumentation when it runs.
        return fuzz_one(args)
    from tests.fuzz.targets import TARGETS

    if args.list:
        for name, target in TARGETS.items():
            print(f"{name:10} {target.covers}")
        return 0
    # One process per target: libFuzzer runs once per process, and each
    # target's memory is measured on its own.
    failed = 0
    for name in TARGETS:
        command = [sys.executable, __file__, *_forwarded(args), "--target", name]
        print(f"$ {' '.join(command[1:])}", flush=True)
        failed |= subprocess.run(command, check=False).returncode != 0
    return 1 if failed else 0


def _forwarded(args: argparse.Namespace) -> list[str]:
    return [
        f"--runs={args.runs}",
        f"--seed={args.seed}",
        f"--engine={args.engine}",
        f"--max-len={args.max_len}",
        f"--hang-seconds={args.hang_seconds}",
        f"--report-every={args.report_every}",
        f"--crash-dir={args.crash_dir}",
    ]


if __name__ == "__main__":
    sys.exit(main())
