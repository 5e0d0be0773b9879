"""``torv demo``: a small generated community, seen from one member's node.

Eight generated people write signed logs (profiles, posts, replies, tags,
reactions, reposts, follows). Their logs reach the demo member's store
through the same checked ingest that synced or imported entries take, and
the member's own node follows some of them, posts and replies. The demo then
prints the member's timeline and a thread.

The network (gossip between nodes) and the terminal app arrive in later
versions; until then the demo shows the signed logs and the local timeline.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage import Entry, Follow, Payload, Post, Profile, React, Repost, create_entry

from .home import Home
from .identity import feed_id_to_text
from .local import LocalNode
from .render import entry_json, entry_text, short_entry_id

__all__ = ["run_demo"]

_PEOPLE = (
    ("Astrid", "Baker in Aarhus. Sourdough, bicycles, local politics."),
    ("Bilal", "Train nerd. Maps. Occasionally poetry."),
    ("Chiara", "Marine biologist, currently counting jellyfish."),
    ("Dmitri", "I repair old radios and older laptops."),
    ("Eun-ji", "Jazz piano and type design."),
    ("Femi", "Organises the community garden on Nørrebrogade."),
    ("Greta", "Teacher. Asks too many questions."),
    ("Hugo", "Writes a newsletter that nobody reads, happily."),
)


@dataclass
class _Person:
    name: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    log: list[Entry] = field(default_factory=list)

    @property
    def feed(self) -> bytes:
        return self.key.public_key().public_bytes_raw()

    def write(self, payload: Payload, timestamp: int) -> Entry:
        prev = self.log[-1].id if self.log else None
        entry = create_entry(
            self.key, seq=len(self.log) + 1, prev=prev, timestamp=timestamp, payload=payload
        )
        self.log.append(entry)
        return entry


def _community(now: int) -> tuple[dict[str, _Person], list[Entry]]:
    people = {name: _Person(name) for name, _ in _PEOPLE}
    minute = 60_000
    clock = now - 6 * 60 * minute

    def at(step: int = 7) -> int:
        nonlocal clock
        clock += step * minute
        return clock

    for name, bio in _PEOPLE:
        people[name].write(Profile(name=name, bio=bio), at(1))
    for name, person in people.items():
        for other in people.values():
            if other is not person and (len(name) + len(other.name)) % 3 != 0:
                person.write(Follow(feed=other.feed), at(0))

    def post(who: str, text: str, reply: Entry | None = None, tags: tuple[str, ...] = ()) -> Entry:
        root = parent = None
        mentions: tuple[bytes, ...] = ()
        if reply is not None:
            assert isinstance(reply.content, Post)
            root, parent = reply.content.root or reply.id, reply.id
            if reply.author != people[who].feed:
                mentions = (reply.author,)
        payload = Post(text=text, root=root, parent=parent, mentions=mentions, tags=tags)
        return people[who].write(payload, at())

    def react(who: str, entry: Entry, emoji: str = "♥") -> None:
        people[who].write(React(entry=entry.id, author=entry.author, emoji=emoji), at(1))

    bread = post("Astrid", "First rye of the season is out of the oven. #baking", tags=("baking",))
    react("Femi", bread)
    react("Greta", bread)
    crumb = post("Femi", "Save me the heel, I'll trade you courgettes.", bread)
    post("Astrid", "Deal. The garden always wins.", crumb)
    trains = post(
        "Bilal",
        "The night train to Hamburg is back on the timetable from March. #trains",
        tags=("trains",),
    )
    react("Hugo", trains, "🚆")
    post("Greta", "My class wants to know if it has a dining car.", trains)
    jelly = post(
        "Chiara",
        "Counted 412 moon jellies in one transect today. That is a lot of jellies. #ocean",
        tags=("ocean",),
    )
    react("Bilal", jelly)
    react("Eun-ji", jelly, "🪼")
    post("Dmitri", "Are they increasing every year, or was it a good day for them?", jelly)
    radio = post("Dmitri", "A 1962 valve radio, working again after two evenings. It hums.")
    people["Hugo"].write(Repost(entry=radio.id, author=radio.author), at(2))
    post("Eun-ji", "Drew a lowercase g today that I am almost happy with. #type", tags=("type",))
    post("Hugo", "This week's newsletter: why town squares matter more than feeds.")
    post("Femi", "Garden meeting Sunday at 11. Bring gloves, we have tea.")
    return people, [entry for person in people.values() for entry in person.log]


def run_demo(data_dir: Path | None, *, as_json: bool = False) -> None:
    """Build the demo community in ``data_dir`` (a temporary one if ``None``) and print it."""
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="torv-demo-") as tmp:
            _run(Path(tmp), kept=False, as_json=as_json)
    else:
        _run(data_dir, kept=True, as_json=as_json)


def _run(path: Path, *, kept: bool, as_json: bool) -> None:
    home = Home(path)
    now = time.time_ns() // 1_000_000
    people, entries = _community(now - 5 * 60_000)
    LocalNode.init(home)
    with LocalNode.open(home) as node:
        node.set_profile(name="You", bio="Trying torv.")
        started = time.perf_counter()
        report = node.store.ingest(entries)
        elapsed = time.perf_counter() - started
        for name in ("Astrid", "Bilal", "Chiara", "Dmitri", "Femi"):
            node.follow(people[name].feed)
        jellies = next(
            e
            for e in people["Chiara"].log
            if isinstance(e.content, Post) and "412" in e.content.text
        )
        mine = node.post("Hello from torv! Your timeline, built on your own machine. #torv")
        reply = node.post(
            "412! Do they come back to the same place every year?", reply_to=jellies.id
        )
        answer = people["Chiara"].write(
            Post(
                text="Some do. The currents decide more than the jellies.",
                root=jellies.id,
                parent=reply.id,
                mentions=(node.me,),
            ),
            time.time_ns() // 1_000_000,
        )
        node.store.ingest([answer])
        timeline = node.timeline(limit=20)
        thread = node.thread(jellies.id)

        if as_json:
            for stored in timeline:
                print(json.dumps(entry_json(node, stored), ensure_ascii=False))
            return
        print(
            f"torv demo: a community of {len(people)} generated people; you are "
            f"{feed_id_to_text(node.me)}.\n"
            f"Their {report.stored} signed entries were checked (signature, chain, format) and "
            f"stored in {elapsed * 1000:.0f} ms. You follow 5 of them, posted "
            f"({short_entry_id(mine.id)}) and replied to Chiara.\n"
            "The network and the terminal app (torv ui) arrive in later versions; for now this\n"
            "shows the signed logs and your local timeline.\n"
        )
        print("── your timeline " + "─" * 50)
        for index, stored in enumerate(timeline):
            if index:
                print()
            print(entry_text(node, stored))
        print("\n── a thread " + "─" * 55)
        for index, item in enumerate(thread.items):
            if index:
                print()
            print(entry_text(node, item.stored, indent=item.depth))
        print("\n" + "─" * 67)
        if kept:
            print(f"The demo data stays in {path}. Try: torv --data-dir {path} timeline")
        else:
            print("Keep the demo data with: torv demo --data-dir DIR")
    sys.stdout.flush()
