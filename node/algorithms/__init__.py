"""Timeline algorithms: the code that decides what you see, yours to read and change.

An algorithm is a Python module with three names::

    NAME = "latest"                       # what you select it by
    DESCRIPTION = "You and the people you follow, newest first."

    def rank(timeline: Timeline, limit: int) -> list[Item]:
        ...

``rank`` reads the local store through :class:`Timeline` (read-only: it can
look, not write) and returns at most ``limit`` :class:`Item` objects, best
first, each with a reason a person can read ("you follow Ana"). It should
stay quick: the app calls it for every page it shows.

The built-in algorithms are modules next to this one (``latest``,
``popular``, ``square``, ``mentions``, ``threads``); your own go in the
``algorithms`` folder of your data directory, one ``NAME.py`` each
(``docs/algorithms.md`` walks through writing one). Your moderation settings
(mutes, word and tag filters, hidden reposts) apply to every algorithm's
result after it ranks: an algorithm cannot bring back what you hid.
"""

from __future__ import annotations

from ._loader import (
    BUILT_IN,
    Algorithm,
    AlgorithmError,
    available,
    load,
    run,
)
from ._timeline import Item, Timeline

__all__ = [
    "BUILT_IN",
    "Algorithm",
    "AlgorithmError",
    "Item",
    "Timeline",
    "available",
    "load",
    "run",
]
