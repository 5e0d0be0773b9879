"""Generation of realistic signed logs for the storage benches.

Feeds post like people do over some weeks: each feed has its own active
period (some went quiet days ago), posts more by day than by night, and
writes posts (some with tags, mentions or a content warning), replies to
recent posts of others (with root and parent), reacts, reposts, follows and
the odd unfollow, profile update and delete. Everything is derived from a seed,
so the same parameters give the same bytes.

Feeds are generated in groups of :data:`GROUP` in worker processes; replies,
reacts and reposts point at entries of the same group (whose ids are known).
Within a group the entries come out interleaved by timestamp, each author's in
log order, as raw ``(header, signature, payload)`` triples: what a peer sends.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import random
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Final

# The benches run from a checkout (`.venv/bin/python bench/X.py`) whether or not
# torv is installed into the virtualenv.
_ROOT: Final = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
)

from storage.entry import Entry, create_entry, parse_entry_untrusted  # noqa: E402
from storage.payloads import (  # noqa: E402
    Delete,
    Follow,
    Payload,
    Post,
    Profile,
    React,
    Repost,
    Unfollow,
)
from storage.store import Store  # noqa: E402

__all__ = [
    "DAY_MS",
    "END_MS",
    "GROUP",
    "Raw",
    "feed_key",
    "generate",
    "generate_groups",
    "owner_key",
]

#: (header, signature, payload): an entry as raw bytes.
Raw = tuple[bytes, bytes, bytes | None]

#: The generated history ends here (2025-06-15 UTC): a fixed date keeps the
#: bytes the same from run to run, and lies in the past so that no timestamp
#: is clamped to the receive time.
END_MS: Final = 1_749_945_600_000
GROUP: Final = 10

DAY_MS: Final = 86_400_000
_VOCABULARY: Final = (
    "the a to and of in is it you that was for on are with as I his they be at one have"
    " this from or had by hot word but what some we can out other were all there when up"
    " use your how said an each she which do their time if will way about many then them"
    " write would like so these her long make thing see him two has look more day could go"
    " come did number sound no most people my over know water than call first who may down"
    " side been now find any new work part take get place made live where after back little"
    " only round man year came show every good me give our under name very through just form"
    " sentence great think say help low line differ turn cause much mean before move right"
    " boy old too same tell does set three want air well also play small end put home read"
    " hand port large spell add even land here must big high such follow act why ask men"
    " change went light kind off need house picture try us again animal point mother world"
    " near build self earth father head stand own page should country found answer school"
    " grow study still learn plant cover food sun four between state keep eye never last"
    " let thought city tree cross farm hard start might story saw far sea draw left late run"
    " gossip torv town square peer log feed signed chain relay seed node sync øl smørrebrød"
    " café naïve 🙂 👍 — “quoted” words, commas. and! questions?"
)
_WORDS: Final = _VOCABULARY.split()
_TOPICS: Final = (
    "python p2p music art photo news tech rust sqlite crypto cats dogs food travel books"
    " film cycling running garden weather linux science space climate games jazz coffee"
    " tea hiking"
)
_TAGS: Final = _TOPICS.split()
_EMOJI: Final = ("❤️", "👍", "😂", "🎉", "🔥", "+1", "❤")


def _private(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def feed_key(seed: int, index: int) -> Ed25519PrivateKey:
    """The key of generated feed ``index``."""
    return _private(f"torv-bench/{seed}/feed/{index}")


def owner_key(seed: int) -> Ed25519PrivateKey:
    """The key of the node owner (whose follows make the timeline)."""
    return _private(f"torv-bench/{seed}/owner")


@lru_cache(maxsize=4)
def _feed_ids(seed: int, feeds: int) -> tuple[bytes, ...]:
    return tuple(feed_key(seed, index).public_key().public_bytes_raw() for index in range(feeds))


def _text(rng: random.Random) -> str:
    # Most posts are short, a few run long (about 110 characters on average).
    words = max(2, min(120, int(rng.lognormvariate(2.6, 0.7))))
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _timestamps(rng: random.Random, count: int) -> list[int]:
    """``count`` sorted posting times over the feed's active period."""
    quiet = int(rng.expovariate(1 / (1.5 * DAY_MS)))  # since the last post
    span = int(rng.uniform(7, 56) * DAY_MS)
    end = END_MS - quiet
    start = end - span
    times: list[int] = []
    while len(times) < count:
        t = rng.randrange(start, end)
        # Fewer posts at night: accept by the hour of day (UTC, one time zone).
        hour = (t // 3_600_000) % 24
        if rng.random() < 0.25 + 0.75 * math.sin(math.pi * hour / 24) ** 2:
            times.append(t)
    times.sort()
    return times


class _Feed:
    def __init__(self, seed: int, index: int, count: int) -> None:
        self.index = index
        self.key = feed_key(seed, index)
        self.rng = random.Random(f"{seed}/{index}")
        self.times = _timestamps(self.rng, count)
        self.seq = 0
        self.prev: bytes | None = None
        self.following: list[bytes] = []
        self.own_posts: deque[bytes] = deque(maxlen=50)

    def payload(
        self, recent: Sequence[tuple[bytes, bytes, bytes]], ids: Sequence[bytes]
    ) -> Payload:
        rng = self.rng
        if self.seq == 1:
            return Profile(name=f"Feed {self.index}", bio=_text(rng))
        r = rng.random()
        if r < 0.04:
            feed = rng.choice(ids)
            if feed not in self.following:
                self.following.append(feed)
            return Follow(feed)
        if r < 0.045 and self.following:
            return Unfollow(self.following.pop(rng.randrange(len(self.following))))
        if r < 0.048 and self.own_posts:
            return Delete(self.own_posts.popleft())
        if r < 0.05:
            return Profile(bio=_text(rng))
        if recent and r < 0.19:
            entry, author, _ = rng.choice(recent)
            return React(entry, author, rng.choice(_EMOJI))
        if recent and r < 0.22:
            entry, author, _ = rng.choice(recent)
            return Repost(entry, author)
        root = parent = None
        if recent and r < 0.37:
            parent, _, root = rng.choice(recent)
        mentions: tuple[bytes, ...] = ()
        if rng.random() < 0.1:
            mentions = tuple({rng.choice(ids): None for _ in range(rng.randint(1, 3))})
        tags = tuple(rng.sample(_TAGS, rng.randint(1, 3))) if rng.random() < 0.2 else ()
        cw = "spoilers" if rng.random() < 0.02 else None
        return Post(_text(rng), root=root, parent=parent, mentions=mentions, tags=tags, cw=cw)


def _group(seed: int, first: int, count: int, per_feed: int, feeds: int) -> list[Raw]:
    """The entries of feeds ``first .. first + count - 1``, interleaved by time."""
    ids = _feed_ids(seed, feeds)
    group = [_Feed(seed, index, per_feed) for index in range(first, first + count)]
    order = sorted((t, n, i) for n, feed in enumerate(group) for i, t in enumerate(feed.times))
    recent: deque[tuple[bytes, bytes, bytes]] = deque(maxlen=200)  # (id, author, root)
    out: list[Raw] = []
    for timestamp, n, _ in order:
        feed = group[n]
        feed.seq += 1
        payload = feed.payload(recent, ids)
        entry: Entry = create_entry(
            feed.key, seq=feed.seq, prev=feed.prev, timestamp=timestamp, payload=payload
        )
        feed.prev = entry.id
        if isinstance(payload, Post):
            recent.append((entry.id, entry.author, payload.root or entry.id))
            if payload.root is None:
                feed.own_posts.append(entry.id)
        out.append((entry.header_bytes, entry.signature, entry.payload))
    return out


def generate_groups(
    seed: int, feeds: int, per_feed: int, *, processes: int | None = None, ahead: int = 3
) -> Iterator[list[Raw]]:
    """The generated entries of ``feeds`` feeds, one list per group of feeds.

    Groups are built in worker processes, at most ``ahead`` more than the
    caller has taken (so a slow consumer keeps memory bounded), and come out
    in order.
    """
    starts = list(range(0, feeds, GROUP))
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        pending: deque[Future[list[Raw]]] = deque()
        for first in starts:
            pending.append(
                pool.submit(_group, seed, first, min(GROUP, feeds - first), per_feed, feeds)
            )
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def generate(seed: int, feeds: int, per_feed: int, *, processes: int | None = None) -> list[Raw]:
    """Every generated entry, group after group (each author's in log order)."""
    groups = generate_groups(seed, feeds, per_feed, processes=processes)
    return [raw for group in groups for raw in group]


def ingest_generated(
    store: Store, seed: int, feeds: int, per_feed: int, *, report_every: int = 50_000
) -> None:
    """Store the generated entries in ``store`` by checked ingest, as a node
    stores entries from a peer (parsed lazily inside ingest), printing
    progress; exits if any entry is refused."""
    total = feeds * per_feed
    started = time.perf_counter()
    done = 0
    for group in generate_groups(seed, feeds, per_feed):
        report = store.ingest(parse_entry_untrusted(*raw) for raw in group)
        if report.rejected:
            index, error = report.rejected[0]
            raise SystemExit(f"generated entry #{index} was rejected: {error}")
        done += len(group)
        if done % report_every < len(group) or done == total:
            elapsed = time.perf_counter() - started
            print(
                f"  built {done:,} / {total:,} entries in {elapsed:.0f} s"
                f" ({done / elapsed:,.0f} entries/s, generation included)",
                flush=True,
            )
