"""`torv run` killed with SIGKILL while it posts and ingests loses nothing it
acknowledged, and its store still verifies: the short run of bench/crash.py
(5 kills at seeded random moments; the bench does 100)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def _crash_bench() -> ModuleType:
    path = Path(__file__).parents[1] / "bench" / "crash.py"
    spec = importlib.util.spec_from_file_location("torv_bench_crash", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sigkill_while_posting_and_ingesting_loses_no_acknowledged_entry(
    tmp_path: Path,
) -> None:
    report = _crash_bench().run_crashes(5, seed=20, max_delay=2.5, directory=tmp_path)
    assert report.problems == []
    assert report.kills == 5
    assert report.lost == 0
    assert report.verify_failures == 0
    assert report.fork_failures == 0
    # The follow and at least some posts were acknowledged; the own log holds
    # each of them and perhaps a post that was in flight at a kill.
    assert report.acknowledged > 1
    assert report.acknowledged <= report.own_entries
    assert report.own_entries <= report.acknowledged + report.in_flight
    # After the kills the node caught up with everything its peer posted.
    assert report.peer_posted > 0
    assert report.peer_held == report.peer_posted
