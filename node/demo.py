"""``torv demo``: a live community of real nodes on loopback.

A swarm of real nodes (:mod:`node.testing`: TCP, the Noise handshake, gossip,
sync and the DHT, on 127.0.0.1 with a test network key, in temporary
directories) gets generated people: names, bios and a follow graph. They
post, reply, react and repost at a lively pace from generated text, and the
terminal app opens as one of them. ``--headless`` runs the swarm for a while
without the app and prints what happened, so the demo is also a smoke test.
Everything is removed when it ends.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from storage import Post
from storage.errors import TorvError

from .runtime import EntryAdded, Node, NodeOptions
from .testing import Swarm, open_swarm

__all__ = ["Demo", "DemoReport", "run_demo_swarm"]

_NAMES: Final = (
    "Astrid", "Bilal", "Chiara", "Dmitri", "Eun-ji", "Femi", "Greta", "Hugo", "Ines", "Jonas",
    "Kemal", "Lena", "Mateo", "Noor", "Oskar", "Priya", "Quentin", "Rosa", "Sami", "Tove",
    "Umar", "Vera", "Wim", "Yara",
)  # fmt: skip
_TRADES: Final = (
    "Baker", "Train nerd", "Marine biologist", "Radio repairer", "Type designer", "Gardener",
    "Teacher", "Newsletter writer", "Cyclist", "Beekeeper", "Nurse", "Bookbinder",
)  # fmt: skip
_PLACES: Final = (
    "Aarhus", "Porto", "Tallinn", "Lyon", "Kraków", "Leeds", "Bologna", "Ghent", "Malmö",
)  # fmt: skip
_TOPICS: Final = {
    "baking": ("the rye starter", "a new sourdough", "cardamom buns", "the oven at 5 am"),
    "trains": ("the night train", "a delayed regional", "the new timetable", "a dining car"),
    "ocean": ("moon jellies", "the tide tables", "a seal at the harbour", "cold water"),
    "radio": ("a valve radio", "the shortwave band", "an old transistor", "a hum in the speaker"),
    "type": ("a lowercase g", "kerning pairs", "a grotesque", "the italic"),
    "garden": ("the courgettes", "the compost", "Sunday's meeting", "the bean poles"),
    "books": ("a used paperback", "the library sale", "a long novel", "a poetry pamphlet"),
    "bikes": ("a flat tyre", "the river path", "new brake pads", "a headwind"),
}
_OPENERS: Final = (
    "Today:", "Small joy:", "Question for you all:", "Honestly,", "Update:", "Note to self:",
    "Can confirm:", "Unpopular opinion:",
)  # fmt: skip
_VERBS: Final = (
    "made my morning", "is harder than it looks", "deserves more attention",
    "surprised me again", "is back", "took all afternoon", "was worth the wait",
    "needs a better name",
)  # fmt: skip
_REPLIES: Final = (
    "Same here!", "Tell me more.", "I did not know that.", "Photos or it did not happen.",
    "This is the best thing I read today.", "Completely agree.", "Hm, not so sure.",
    "Where was this?", "Saving this for later.", "Ha, yes.",
)  # fmt: skip
_EMOJI: Final = ("♥", "♥", "♥", "👍", "😂", "🎉", "🤔")


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    bio: str
    #: Indexes of the people this one follows.
    follows: tuple[int, ...]


def generate_people(count: int, rng: random.Random) -> list[Person]:
    """``count`` people with names, bios and a follow graph (each follows 3 to 6;
    the first three also follow the last, the one the app shows)."""
    people = []
    for index in range(count):
        name = _NAMES[index % len(_NAMES)]
        if index >= len(_NAMES):
            name += f" {index // len(_NAMES) + 1}"
        interests = rng.sample(sorted(_TOPICS), 2)
        bio = (
            f"{rng.choice(_TRADES)} in {rng.choice(_PLACES)}."
            f" Posts about #{interests[0]} and #{interests[1]}."
        )
        others = [other for other in range(count) if other != index]
        follows = set(rng.sample(others, min(len(others), rng.randint(3, 6))))
        # The last person is the one the app shows: a few people follow them,
        # so their mentions screen fills up too.
        if index < min(3, count - 1):
            follows.add(count - 1)
        people.append(Person(name, bio, tuple(sorted(follows))))
    return people


def generate_text(rng: random.Random) -> tuple[str, str]:
    """A post's text and its tag."""
    tag = rng.choice(sorted(_TOPICS))
    thing = rng.choice(_TOPICS[tag])
    text = f"{rng.choice(_OPENERS)} {thing} {rng.choice(_VERBS)}. #{tag}"
    return text, tag


@dataclass
class DemoReport:
    """What a demo run did (``torv demo --headless`` prints it)."""

    nodes: int
    seconds: float
    entries: int = 0
    posts: int = 0
    expected: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return len(self.latencies)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def lines(self) -> list[str]:
        share = 100.0 * self.delivered / self.expected if self.expected else 100.0
        return [
            f"torv demo: {self.nodes} nodes on loopback for {self.seconds:.0f} s",
            f"entries made: {self.entries} ({self.posts} posts and replies)",
            f"delivered to followers: {self.delivered} of {self.expected} ({share:.1f}%)",
            f"latency from post to follower: p50 {self.percentile(0.5) * 1000:.0f} ms,"
            f" p99 {self.percentile(0.99) * 1000:.0f} ms",
        ]


class Demo:
    """A running demo swarm: people on nodes, and their activity."""

    def __init__(self, swarm: Swarm, people: list[Person], rng: random.Random) -> None:
        self.swarm = swarm
        self.people = people
        self.rng = rng
        #: The node the app shows (the last one: not the seed everyone joins through).
        self.viewer = len(people) - 1
        self.report = DemoReport(nodes=len(people), seconds=0.0)
        self._published: dict[bytes, tuple[float, int]] = {}
        #: Set when every tracked post has reached every follower (so far).
        self.all_delivered = trio.Event()
        self._followers = [
            {index for index, person in enumerate(people) if author in person.follows}
            for author in range(len(people))
        ]

    @property
    def nodes(self) -> list[Node]:
        return self.swarm.nodes

    async def introduce(self) -> None:
        """Profiles and follows, written through each node (so they gossip)."""
        for node, person in zip(self.nodes, self.people, strict=True):
            await node.set_profile(name=person.name, bio=person.bio)
        for node, person in zip(self.nodes, self.people, strict=True):
            for other in person.follows:
                await node.follow(self.nodes[other].me)
        # Something to read from the start (not tracked: follows may still be syncing).
        for node in self.nodes:
            text, _ = generate_text(self.rng)
            await node.post(text)
            self.report.entries += 1

    async def watch(self, index: int) -> None:
        """Count deliveries of tracked posts at node ``index``."""
        async with self.nodes[index].events() as events:
            async for event in events:
                if not isinstance(event, EntryAdded) or event.source is None:
                    continue
                published = self._published.get(event.entry_id)
                if published is not None and index in self._followers[published[1]]:
                    self.report.latencies.append(trio.current_time() - published[0])
                    if self.report.delivered >= self.report.expected:
                        self.all_delivered.set()

    async def act(self, rate: float, *, until: float = math.inf) -> None:
        """People other than the viewer post, reply, react and repost,
        ``rate`` actions per second on average, until ``until`` (trio time)."""
        actors = [index for index in range(len(self.people)) if index != self.viewer]
        while trio.current_time() < until:
            await trio.sleep(self.rng.expovariate(rate))
            actor = self.rng.choice(actors)
            try:
                await self._act_once(actor)
            except TorvError:
                continue  # a target vanished in the meantime; the next action will do

    async def _act_once(self, actor: int) -> None:
        node = self.nodes[actor]
        roll = self.rng.random()
        recent = [
            stored.entry
            for stored in await node.timeline(limit=20)
            if stored.entry.author != node.me and isinstance(stored.entry.content, Post)
        ]
        if roll < 0.45 or not recent:
            text, _ = generate_text(self.rng)
            self._track(actor, (await node.post(text)).id)
            return
        target = self.rng.choice(recent)
        if roll < 0.7:
            self._track(actor, (await node.post(self.rng.choice(_REPLIES), reply_to=target.id)).id)
        elif roll < 0.92:
            self.report.entries += 1
            await node.react(target.id, self.rng.choice(_EMOJI))
        else:
            self.report.entries += 1
            await node.repost(target.id)

    def _track(self, actor: int, entry_id: bytes) -> None:
        self.report.entries += 1
        self.report.posts += 1
        self._published[entry_id] = (trio.current_time(), actor)
        self.report.expected += len(self._followers[actor])
        if self.all_delivered.is_set() and self._followers[actor]:
            self.all_delivered = trio.Event()


async def run_demo_swarm(
    count: int,
    seed: int | None,
    *,
    directory: Path | None = None,
    ready: Callable[[Demo, trio.Nursery], None] | None = None,
    seconds: float | None = None,
    rate: float | None = None,
) -> DemoReport:
    """Run the demo swarm: ``count`` nodes, people from ``seed``.

    ``ready`` is called once everyone is introduced. With ``seconds``, the
    people act for that long, stragglers get a few seconds more to arrive,
    and the report is returned; without, they act until cancelled.
    """
    rng = random.Random(seed)
    people = generate_people(count, rng)
    rate = rate if rate is not None else max(1.0, count / 6)
    options = NodeOptions(maintain_interval=2.0)
    started = time.monotonic()
    async with open_swarm(count, options=options, directory=directory) as swarm:
        demo = Demo(swarm, people, rng)
        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(demo.watch, index)
            await demo.introduce()
            if ready is not None:
                ready(demo, nursery)
            if seconds is None:
                await demo.act(rate)
            else:
                await demo.act(rate, until=trio.current_time() + seconds)
                with trio.move_on_after(5.0):
                    await demo.all_delivered.wait()
            nursery.cancel_scope.cancel()
    demo.report.seconds = time.monotonic() - started if seconds is None else seconds
    return demo.report
