"""Finding, loading and running timeline algorithms (built-in and the owner's own)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

from storage.errors import LocalError

from ._timeline import Item, Timeline

__all__ = ["BUILT_IN", "Algorithm", "AlgorithmError", "available", "load", "run"]

#: The built-in algorithms, in the order they are listed.
BUILT_IN: Final = ("latest", "popular", "square", "mentions", "threads")
DEFAULT: Final = "latest"
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")
_MAX_SOURCE: Final = 1024 * 1024

Rank = Callable[[Timeline, int], list[Item]]


#: The owner's algorithms loaded so far, by (file, modification time, size):
#: a file is run again only when it changes.
_loaded: dict[tuple[Path, int, int], Algorithm] = {}


class AlgorithmError(LocalError):
    """An algorithm could not be loaded or failed while ranking; ``algorithm``
    names it where the error is listed rather than raised."""

    algorithm: str | None = None


@dataclass(frozen=True, slots=True)
class Algorithm:
    """A loaded algorithm. ``path`` is its file for the owner's own, else ``None``."""

    name: str
    description: str
    rank: Rank
    path: Path | None = None


def _folder(data_dir: Path | None) -> Path | None:
    return None if data_dir is None else data_dir / "algorithms"


def _from_module(module: ModuleType, name: str, path: Path | None) -> Algorithm:
    rank = getattr(module, "rank", None)
    if not callable(rank):
        raise AlgorithmError(f"algorithm {name!r} has no rank(timeline, limit) function")
    description = getattr(module, "DESCRIPTION", None) or (module.__doc__ or "").strip()
    if not isinstance(description, str):
        raise AlgorithmError(f"algorithm {name!r}: DESCRIPTION must be text")
    return Algorithm(name, description.splitlines()[0] if description else "", rank, path)


def _check_file(path: Path) -> None:
    # Someone who can write the file can run code as the owner: refuse
    # files that others may change, as the key file is refused when others
    # may read it.
    info = path.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise AlgorithmError(f"{path} may be changed by other users; run: chmod go-w {path}")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise AlgorithmError(f"{path} belongs to another user")
    if info.st_size > _MAX_SOURCE:
        raise AlgorithmError(f"{path} is larger than {_MAX_SOURCE} bytes")


def load(name: str, data_dir: Path | None = None) -> Algorithm:
    """The algorithm called ``name``: the owner's own file in
    ``DATA_DIR/algorithms/NAME.py`` if there is one, else a built-in.

    Raises :class:`AlgorithmError` with a message for a person: an unknown
    name, a file that others may change, a file that does not import, or
    one without ``rank``.
    """
    if not _NAME.fullmatch(name):
        raise AlgorithmError(f"{name!r} is not an algorithm name (letters, digits, - and _)")
    folder = _folder(data_dir)
    path = None if folder is None else folder / f"{name}.py"
    if path is not None and path.is_file():
        _check_file(path)
        info = path.stat()
        key = (path, info.st_mtime_ns, info.st_size)
        cached = _loaded.get(key)
        if cached is not None:
            return cached
        module_name = f"torv_user_algorithm_{name.replace('-', '_')}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise AlgorithmError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # the owner's code: reported, not raised
            raise AlgorithmError(f"{path} does not load: {_describe(exc)}") from exc
        finally:
            sys.modules.pop(module_name, None)
        algorithm = _from_module(module, name, path)
        for stale in [k for k in _loaded if k[0] == path]:
            del _loaded[stale]
        _loaded[key] = algorithm
        return algorithm
    if name in BUILT_IN:
        return _from_module(importlib.import_module(f"{__package__}.{name}"), name, None)
    raise AlgorithmError(
        f"no algorithm {name!r}: built in are {', '.join(BUILT_IN)}"
        + (f"; your own go in {folder}" if folder is not None else "")
    )


def available(data_dir: Path | None = None) -> list[Algorithm | AlgorithmError]:
    """Every algorithm: the built-ins, then the owner's own (by name); one
    that does not load is listed as its :class:`AlgorithmError`."""
    found: list[Algorithm | AlgorithmError] = [load(name) for name in BUILT_IN]
    folder = _folder(data_dir)
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            if path.stem in BUILT_IN:
                continue  # listed above, loaded from the owner's file when selected
            try:
                found.append(load(path.stem, data_dir))
            except AlgorithmError as exc:
                exc.algorithm = path.stem
                found.append(exc)
    return found


def run(
    name: str, timeline: Timeline, limit: int, data_dir: Path | None = None
) -> tuple[list[Item], AlgorithmError | None]:
    """Rank with ``name``; if it cannot load, fails or returns something that
    is not a list of items, rank with the built-in ``latest`` instead and
    return the error beside the items (the caller shows it; the timeline
    still appears). Errors of the store itself are raised as they are."""
    try:
        return _rank(load(name, data_dir), timeline, limit), None
    except AlgorithmError as exc:
        return _rank(load(DEFAULT), timeline, limit), exc


def _rank(algorithm: Algorithm, timeline: Timeline, limit: int) -> list[Item]:
    if algorithm.path is None:
        items = algorithm.rank(timeline, limit)  # built in: its errors are torv's own
    else:
        try:
            items = algorithm.rank(timeline, limit)
        except (Exception, SystemExit) as exc:  # the owner's code: reported, not raised
            raise AlgorithmError(f"algorithm {algorithm.name!r} failed: {_describe(exc)}") from exc
    if not isinstance(items, list) or not all(isinstance(item, Item) for item in items):
        raise AlgorithmError(f"algorithm {algorithm.name!r} did not return a list of Item")
    return items[:limit]


def _describe(exc: BaseException) -> str:
    where = ""
    traceback = exc.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    if traceback is not None:
        where = (
            f" (line {traceback.tb_lineno} of {Path(traceback.tb_frame.f_code.co_filename).name})"
        )
    return f"{type(exc).__name__}: {exc}{where}"
