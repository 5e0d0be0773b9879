"""Feed sync: pull the parts of shared feeds that one side lacks (sans I/O).

Gossip carries the recent past; sync carries the rest. When two peers
connect, each sends :meth:`SyncPlanner.hello` (``heads``: feed -> latest seq
held, for the feeds it replicates) and pulls what it lacks with ``want``
requests that the other side serves with :func:`answer`. Nothing here does
I/O, reads the clock or touches the store: a driver passes in messages, the
time (``now``, in seconds) and what the store reports, and sends what comes
out.

Decisions the code depends on:

- **Chains first.** The store only takes a feed's log from seq 1 without
  holes (an entry ahead of a gap is refused), so each feed is fetched
  oldest range first, and a batch is handed to the driver for ingest only
  when every range before it has been handed over. Ranges of one feed may
  be in flight together (that keeps a single large feed moving); a batch
  that arrives early is parked until its turn.
- **Newest first, where someone waits.** A feed marked *urgent* (a timeline
  is open on it) is served before the others. If an urgent feed lacks more
  than a preview page (:data:`PREVIEW_SIZE`), the planner first asks for the
  newest page, newest first, and hands it out as ``preview``: the driver
  keeps those entries in a :class:`GapBuffer` (checking their signatures if
  it shows them, marked as still syncing) and the store takes them only when
  the backfill reaches them (:meth:`GapBuffer.ready`). The backfill does not
  skip the preview range, so a preview evicted or expired from the buffer
  costs nothing but the second fetch of one page.
- **Flow control.** At most ``window`` requests are outstanding per peer,
  each for at most ``range_size`` (<= :data:`~gossip.wire.MAX_RANGE`) seqs.
  Feeds take turns (round robin, urgent feeds first), one request per turn,
  so one huge feed cannot starve the others. Answers parked behind an
  earlier range are bounded too: past ``window`` of them, only a feed's
  first missing range may be asked for (that is what unblocks them).
- **Timeouts.** A request times out ``timeout`` seconds after it was sent,
  or after the answer to a request sent before it arrived, whichever is
  later: a peer answers in turn, so on a slow link the last of a window
  waits behind the others, while a request the peer skipped gets no extra
  time. A request that times out is sent once more under the same id; if
  that times out too, the peer is reported unresponsive and the range is
  planned again.
- **The store is the truth.** After ingesting what :meth:`SyncPlanner.on_batch`
  handed out, the driver reports the feed's new head with
  :meth:`SyncPlanner.on_ingested`; the plan continues from there, so sync
  resumes from whatever the store holds (a new connection starts from the
  store's heads). If the head falls short of what the batch carried, the
  store refused some of it.
- **Heads as they move.** Gossip reaches only the peers in a feed's mesh
  when an entry is new, and heads go out when peers meet: an entry that a
  peer got after the two exchanged heads, while we were not yet in its
  mesh (or that it got by sync, which gossip does not forward), would
  reach us only with the next connection. So each side tells the other its
  head of a feed again where it holds more than the other offered and than
  it told it, for the feeds the other listed in its ``heads`` (it
  replicates them too; feeds it listed before they were in our scope are
  remembered, up to :data:`MENTIONED_FEEDS`). Heads are told once they have
  stood still for a round of :meth:`SyncPlanner.announce_progress` (the
  driver calls it every few seconds): by then gossip has delivered what it
  delivers, and sync does not fetch entries still on their way. While a
  feed keeps moving, gossip carries it, and an entry missed shows as a gap
  at the next one; its head is told only every :data:`MOVING_HEAD_ROUNDS`
  rounds, for a peer that gossip does not reach at all. A feed
  joining the scope is told at once (:meth:`SyncPlanner.announce`), so the
  peer learns that we replicate it, and so are heads that show the peer
  behind. Each side tells its own progress, so nothing needs an answer
  beyond that, and the exchange ends.
- **Faults end a feed, not the peer.** The planner reads only the author and
  seq each entry claims (full validation is the store's job, at ingest). A
  batch that breaks the request (another feed, seqs outside the range, out
  of order, ending before what the peer offered, no progress) or carries
  entries the store refuses makes the planner stop syncing that feed from
  that peer; every fault comes back as a :class:`SyncProblem` for the driver
  to score. Nothing a peer sends raises.

Not decided here: which feeds are in scope (the node decides;
:func:`replication_scope` is the rule as a pure function), and which peer
to ask when several offer a feed (one planner per peer; the node tells every
planner about progress through :meth:`SyncPlanner.on_local_head`).
"""

from __future__ import annotations

import enum
import math
from bisect import insort
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from storage import canonical
from storage.entry import MAX_HEADER_SIZE, MAX_SEQ, SIGNATURE_SIZE
from storage.errors import InvalidArgument
from storage.payloads import MAX_PAYLOAD_SIZE

from .wire import MAX_HEADS, MAX_RANGE, MAX_WIRE_MESSAGE, EntryBatch, Heads, RawEntry, Want

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "MOVING_HEAD_ROUNDS",
    "PREVIEW_SIZE",
    "BatchOutcome",
    "Fault",
    "FeedProgress",
    "GapBuffer",
    "SyncPlanner",
    "SyncProblem",
    "answer",
    "replication_scope",
]

#: Requests outstanding per peer.
DEFAULT_WINDOW: Final = 4
#: Seconds before a request is sent again (and, the second time, given up).
#: Generous: a full batch is 1 MiB, and the last of a window waits behind
#: the others on a slow link.
DEFAULT_TIMEOUT: Final = 30.0
#: Entries of an urgent feed fetched newest first, ahead of its backfill:
#: one timeline page.
PREVIEW_SIZE: Final = 50

# msgpack framing of one entry in a batch: a 3-array header plus three
# bin (or nil) headers is at most 1 + 3 + 2 + 3 bytes; 16 leaves room.
_ENTRY_FRAMING: Final = 16
# [version, "entries", {"done", "entries", "request"}] around the entries
# is 43 bytes at most.
_BATCH_FRAMING: Final = 64
_MAX_RAW_ENTRY: Final = MAX_HEADER_SIZE + SIGNATURE_SIZE + MAX_PAYLOAD_SIZE
# The smallest byte budget in which any one entry fits.
_MIN_BATCH_BYTES: Final = _BATCH_FRAMING + _ENTRY_FRAMING + _MAX_RAW_ENTRY
# Ids of closed requests whose answer may still come (re-sent, or given up
# on) and is not a fault: the most recent ones are kept.
_TOLERATED_IDS: Final = 256
#: Feeds outside the scope that a peer listed in ``heads``, remembered per
#: peer (the oldest are forgotten first): if one joins the scope, the peer
#: is known to replicate it and what it offered stands.
MENTIONED_FEEDS: Final = 8192
#: Rounds of :meth:`SyncPlanner.announce_progress` after which a head that
#: keeps moving is told all the same (16 s at the node's 2 s rounds).
MOVING_HEAD_ROUNDS: Final = 8
_REQUEST_IDS: Final = 2**32


class Fault(enum.StrEnum):
    """What a peer did wrong in sync; the driver maps each to a score penalty."""

    #: A batch answers a request id never issued on this connection.
    UNKNOWN_REQUEST = "unknown-request"
    #: A second answer to a request already answered.
    UNEXPECTED_BATCH = "unexpected-batch"
    #: An entry whose header cannot be read.
    MALFORMED_ENTRY = "malformed-entry"
    #: An entry of another feed than the one asked for.
    WRONG_FEED = "wrong-feed"
    #: An entry outside the range asked for (a batch larger than asked).
    OUT_OF_RANGE = "out-of-range"
    #: Entries not in the order asked for, skipping seqs, or repeated.
    OUT_OF_ORDER = "out-of-order"
    #: ``done`` before the end of a range that the peer's heads offered.
    SHORT_BATCH = "short-batch"
    #: Not ``done``, yet no entry: the peer would have us ask forever.
    NO_PROGRESS = "no-progress"
    #: The store refused entries from this peer (bad signature, chain, ...).
    REJECTED = "rejected"
    #: A request went unanswered twice.
    UNRESPONSIVE = "unresponsive"


@dataclass(frozen=True, slots=True)
class SyncProblem:
    """One fault of the peer: which, for which feed and request, and why."""

    fault: Fault
    feed: bytes | None
    request: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What :meth:`SyncPlanner.on_batch` made of an ``entries`` message.

    ``entries`` are ``feed``'s next entries in log order, unchecked: parse
    and ingest them in this order, then call :meth:`SyncPlanner.on_ingested`
    (once per outcome with entries). ``preview`` holds ``(seq, entry)`` pairs
    of the newest entries of an urgent feed, newest first, ahead of the
    local head: hold them (:class:`GapBuffer`), never ingest them now.
    ``problems`` are the peer's faults, if any.
    """

    feed: bytes | None = None
    entries: tuple[RawEntry, ...] = ()
    preview: tuple[tuple[int, RawEntry], ...] = ()
    problems: tuple[SyncProblem, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedProgress:
    """Sync of one feed from one peer: seqs held here, and how far the peer goes.

    ``target`` is what the peer offered (never below ``have``); ``abandoned``
    when the planner stopped syncing the feed from this peer after a fault.
    """

    have: int
    target: int
    abandoned: bool

    @property
    def complete(self) -> bool:
        return self.have >= self.target


def replication_scope(
    own: bytes,
    following: Mapping[bytes, Collection[bytes]],
    *,
    hops: int = 1,
    blocked: Collection[bytes] = (),
) -> frozenset[bytes]:
    """The feeds a node replicates: its own, and those ``hops`` follows away.

    ``following`` maps a feed to the feeds it follows (as the store knows
    them); ``hops=1`` adds the owner's follows, ``hops=2`` their follows too.
    A blocked feed is never in scope, and its follows are not reached through
    it. Raises :class:`InvalidArgument` for a negative ``hops``.
    """
    if hops < 0:
        raise InvalidArgument(f"hops must be 0 or more, not {hops}")
    excluded = frozenset(blocked) - {own}
    scope = {own}
    ring = {own}
    for _ in range(hops):
        ring = {feed for author in ring for feed in following.get(author, ())}
        ring -= scope
        ring -= excluded
        scope |= ring
    return frozenset(scope)


def _entry_size(raw: RawEntry) -> int:
    return len(raw.header) + len(raw.signature) + (len(raw.payload) if raw.payload else 0)


def answer(
    want: Want,
    entries: Sequence[RawEntry],
    *,
    max_entries: int = MAX_RANGE,
    max_bytes: int = MAX_WIRE_MESSAGE,
) -> EntryBatch:
    """The serving side: the batch that answers ``want``.

    ``entries`` are what the store holds of ``want.feed`` from ``want.first``
    to ``want.last``, in log order (a fork's entries after the first of their
    seq). The batch carries them in the order asked (newest first reverses
    them), as many as fit in ``max_entries`` and in an encoded message of
    ``max_bytes``; ``done`` is false when some were cut, so that the
    requester asks for the rest. Raises :class:`InvalidArgument` for bounds
    a peer would refuse or in which one entry might not fit.
    """
    if not 1 <= max_entries <= MAX_RANGE:
        raise InvalidArgument(f"max_entries must be from 1 to {MAX_RANGE}")
    if not _MIN_BATCH_BYTES <= max_bytes <= MAX_WIRE_MESSAGE:
        raise InvalidArgument(f"max_bytes must be from {_MIN_BATCH_BYTES} to {MAX_WIRE_MESSAGE}")
    ordered = reversed(entries) if want.newest_first else iter(entries)
    budget = max_bytes - _BATCH_FRAMING
    batch: list[RawEntry] = []
    for raw in ordered:
        size = _entry_size(raw) + _ENTRY_FRAMING
        if len(batch) == max_entries or size > budget:
            break
        budget -= size
        batch.append(raw)
    return EntryBatch(want.request, tuple(batch), done=len(batch) == len(entries))


def _peek_untrusted(raw: RawEntry) -> tuple[bytes, int] | None:
    """The author and seq an entry's header claims, or ``None`` if unreadable.

    Nothing else is checked, not even that the encoding is canonical (which
    would take several times as long as the rest of a batch's planning): the
    store checks the entry in full at ingest, and refuses what passed here.
    """
    header = raw.header
    if len(header) > MAX_HEADER_SIZE:
        return None
    try:
        fields = canonical.unpack_bounded(header, max_size=MAX_HEADER_SIZE)
    except ValueError:
        return None
    if not isinstance(fields, list) or len(fields) < 3:
        return None
    author, seq = fields[1], fields[2]
    if not isinstance(author, bytes) or type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        return None
    return author, seq


def _scan(
    want: Want, entries: Iterable[RawEntry]
) -> tuple[list[tuple[int, RawEntry]], SyncProblem | None]:
    """The longest prefix of ``entries`` that fits ``want``, and the fault after it.

    Fitting means: ``want.feed``'s entries, inside the range, in the order
    asked, with no seq skipped; a seq may repeat only with other bytes (the
    entries of a fork). Oldest-first batches must start at ``want.first``.
    """
    step = -1 if want.newest_first else 1
    accepted: list[tuple[int, RawEntry]] = []
    variants: list[RawEntry] = []
    for raw in entries:
        peeked = _peek_untrusted(raw)
        fault, detail = None, ""
        if peeked is None:
            fault, detail = Fault.MALFORMED_ENTRY, "an entry's header cannot be read"
        elif peeked[0] != want.feed:
            fault, detail = Fault.WRONG_FEED, "an entry of another feed"
        elif not want.first <= peeked[1] <= want.last:
            fault = Fault.OUT_OF_RANGE
            detail = f"seq {peeked[1]} outside {want.first}..{want.last}"
        else:
            seq = peeked[1]
            if not accepted:
                fits = want.newest_first or seq == want.first
            elif seq == accepted[-1][0]:
                fits = raw not in variants
            else:
                fits = seq == accepted[-1][0] + step
            if fits:
                if not accepted or seq != accepted[-1][0]:
                    variants.clear()
                variants.append(raw)
                accepted.append((seq, raw))
                continue
            fault, detail = Fault.OUT_OF_ORDER, f"seq {seq} out of order"
        return accepted, SyncProblem(fault, want.feed, want.request, detail)
    return accepted, None


# --- the planner ----------------------------------------------------------------


class _Phase(enum.Enum):
    SENT = "sent"  # asked once; the answer is awaited
    DUE = "due"  # timed out once: to be asked again, under the same id
    RESENT = "resent"  # asked twice: one more timeout and the peer is unresponsive
    ORPHAN = "orphan"  # no longer wanted (feed dropped or abandoned): its answer is ignored


class _Event(enum.Enum):
    TIMEOUT = "timeout"
    RESEND = "resend"
    ANSWER = "answer"
    CANCEL = "cancel"


# (phase, event) -> next phase; None closes the request. Any other pair is a
# bug in the planner, not something a peer can cause.
_TRANSITIONS: Final[dict[tuple[_Phase, _Event], _Phase | None]] = {
    (_Phase.SENT, _Event.TIMEOUT): _Phase.DUE,
    (_Phase.SENT, _Event.ANSWER): None,
    (_Phase.SENT, _Event.CANCEL): _Phase.ORPHAN,
    (_Phase.DUE, _Event.RESEND): _Phase.RESENT,
    (_Phase.DUE, _Event.ANSWER): None,
    (_Phase.DUE, _Event.CANCEL): None,  # no deadline to wait for: close it now
    (_Phase.RESENT, _Event.TIMEOUT): None,
    (_Phase.RESENT, _Event.ANSWER): None,
    (_Phase.RESENT, _Event.CANCEL): _Phase.ORPHAN,
    (_Phase.ORPHAN, _Event.TIMEOUT): None,
    (_Phase.ORPHAN, _Event.ANSWER): None,
}


@dataclass(slots=True)
class _Request:
    want: Want
    phase: _Phase
    deadline: float
    sent: int  # the order of its (latest) sending on this connection

    def move(self, event: _Event) -> bool:
        """Take the transition for ``event``; False if it closes the request."""
        try:
            phase = _TRANSITIONS[self.phase, event]
        except KeyError:
            raise AssertionError(f"no transition from {self.phase} on {event}") from None
        if phase is None:
            return False
        self.phase = phase
        return True


@dataclass(slots=True)
class _Slot:
    """A range of one feed, in flight or answered but not yet handed out."""

    first: int
    last: int
    request: int | None = None  # None: to be asked (again)
    arrived: list[tuple[int, RawEntry]] | None = None


class _Preview(enum.Enum):
    NOT_ASKED = "not-asked"
    ASKED = "asked"
    DONE = "done"


@dataclass(slots=True)
class _Feed:
    have: int  # the store's head, as last reported
    urgent: bool
    frontier: int  # the first seq no slot covers
    offered: int = 0  # the peer's heads: a batch ending below this is a fault
    target: int = 0  # how far to fetch: offered, or more on a gap hint
    slots: list[_Slot] = field(default_factory=list)
    # The head each handed-out run should bring the store to, in order.
    expected: deque[int] = field(default_factory=deque)
    preview: _Preview = _Preview.NOT_ASKED
    preview_request: int | None = None
    abandoned: bool = False
    shared: bool = False  # the peer listed this feed in heads: it replicates it
    told: int = -1  # our head as last told to the peer; -1: never told
    told_round: int = 0  # the round of announce_progress() when it was told
    stable: int = 0  # our head once it stood still for a round (see announce_progress)

    def worth_telling(self) -> bool:
        return self.told < 0 or (self.shared and self.stable > max(self.offered, self.told))

    def has_work(self) -> bool:
        if self.abandoned:
            return False
        return self.frontier <= self.target or any(
            slot.request is None and slot.arrived is None for slot in self.slots
        )


class SyncPlanner:
    """Plans what to pull from one connected peer, and checks what it sends.

    Built with the feeds this node replicates (``scope``) and the store's
    heads for them (``heads``: feed -> latest seq; absent means 0); feeds in
    ``urgent`` go first and get a preview (see the module docstring).

    The driver's loop: send :meth:`hello`; hand the peer's ``heads`` to
    :meth:`on_heads`; call :meth:`expire` and :meth:`next_requests` and send
    the ``want`` messages; hand each ``entries`` message to :meth:`on_batch`,
    ingest what it returns and report with :meth:`on_ingested`; wake at
    :meth:`next_deadline`. Nothing a peer sends raises; faults come back as
    :class:`SyncProblem` values. Raises :class:`InvalidArgument` for
    parameters out of range.
    """

    def __init__(
        self,
        scope: Collection[bytes],
        heads: Mapping[bytes, int],
        *,
        urgent: Collection[bytes] = (),
        window: int = DEFAULT_WINDOW,
        timeout: float = DEFAULT_TIMEOUT,
        range_size: int = MAX_RANGE,
        preview: int = PREVIEW_SIZE,
    ) -> None:
        if window < 1:
            raise InvalidArgument(f"window must be at least 1, not {window}")
        if not timeout > 0:
            raise InvalidArgument(f"timeout must be positive, not {timeout}")
        if not 1 <= range_size <= MAX_RANGE:
            raise InvalidArgument(f"range_size must be from 1 to {MAX_RANGE}")
        if not 0 <= preview <= MAX_RANGE:
            raise InvalidArgument(f"preview must be from 0 to {MAX_RANGE}")
        self._window = window
        self._timeout = timeout
        self._range = range_size
        self._preview_size = preview
        self._urgent = frozenset(urgent)
        self._feeds: dict[bytes, _Feed] = {}
        self._requests: dict[int, _Request] = {}
        self._next_id = 0
        self._sends = 0
        self._parked = 0  # answered ranges waiting for an earlier one, all feeds
        self._tolerated: dict[int, None] = {}
        # Feeds that may have something to ask, in turn order; each feed at
        # most once, in the queue of its urgency (value of ``_queued``).
        self._queues: dict[bool, deque[bytes]] = {True: deque(), False: deque()}
        self._queued: dict[bytes, bool] = {}
        # Feeds out of scope the peer listed, with its offer (MENTIONED_FEEDS).
        self._mentioned: dict[bytes, int] = {}
        # Feeds to tell of now: joined the scope, or the peer sent its head.
        self._to_announce: set[bytes] = set()
        # Feeds whose head moved since announce_progress() last ran, and the
        # heads it saw moved then (stable at its next run).
        self._moved: set[bytes] = set()
        self._settling: dict[bytes, int] = {}
        self._round = 0  # calls of announce_progress()
        for feed in scope:
            self._add_feed(feed, heads.get(feed, 0))

    # --- what the driver asks -----------------------------------------------

    @property
    def scope(self) -> frozenset[bytes]:
        return frozenset(self._feeds)

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered or given up (at most ``window``)."""
        return len(self._requests)

    @property
    def parked(self) -> int:
        """Answered ranges held until an earlier range of their feed arrives.

        Bounded: past ``window`` of them, only requests for a feed's first
        missing range go out, so at most about twice ``window``.
        """
        return self._parked

    @property
    def has_work(self) -> bool:
        """Whether :meth:`next_requests` may have something to send now (cheap,
        unlike :attr:`idle`)."""
        return bool(self._queued)

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing more to ask of this peer (for now)."""
        return not self._requests and not any(
            state.has_work() or state.slots for state in self._feeds.values()
        )

    def progress(self) -> dict[bytes, FeedProgress]:
        """Each feed in scope: seqs held, how far this peer goes, abandoned or not."""
        return {
            feed: FeedProgress(state.have, max(state.have, state.target), state.abandoned)
            for feed, state in self._feeds.items()
        }

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has work next, or ``None`` with nothing in flight."""
        deadlines = [r.deadline for r in self._requests.values() if r.deadline != math.inf]
        return min(deadlines, default=None)

    def hello(self) -> list[Heads]:
        """Our heads of every feed in scope, as ``heads`` messages.

        A feed we want but hold nothing of is listed with seq 0, so the peer
        learns what we replicate. Sorted by feed, at most
        :data:`~gossip.wire.MAX_HEADS` pairs each; always at least one message
        (empty when the scope is), so the peer always hears from us. Every
        feed counts as told (see :meth:`announce`).
        """
        for state in self._feeds.values():
            state.told = state.stable = state.have
        self._to_announce.clear()
        pairs = sorted((feed, state.have) for feed, state in self._feeds.items())
        if not pairs:
            return [Heads(())]
        return _chunked(pairs)

    def announce(self) -> list[Heads]:
        """Our heads that the peer should hear now, as ``heads`` messages (maybe none).

        Call after :meth:`on_heads` and :meth:`set_scope`. Lists the feeds
        that joined the scope since :meth:`hello` (the peer learns that we
        replicate them), and those whose heads the peer just sent where we
        hold more (as of the last round of :meth:`announce_progress`).
        """
        feeds, self._to_announce = self._to_announce, set()
        return self._tell(feeds)

    def announce_progress(self) -> list[Heads]:
        """Our progress that the peer should hear, as ``heads`` messages (maybe none).

        Call every few seconds. Lists the feeds the peer replicates too where
        our head is more than it offered and than we told it, once the head
        has stood still for a whole round: while a feed moves, gossip is
        bringing its entries to the peer, and a peer that missed one sees the
        gap at the next and fetches it. A head that keeps moving is told
        after :data:`MOVING_HEAD_ROUNDS` rounds (its value at the round
        before), for a peer that gossip does not reach. The cost follows the
        feeds whose heads moved, not the scope.
        """
        self._round += 1
        feeds: list[bytes] = []
        for feed, seq in self._settling.items():
            state = self._feeds.get(feed)
            if state is None:
                continue
            if feed in self._moved and self._round - state.told_round < MOVING_HEAD_ROUNDS:
                continue
            state.stable = max(state.stable, seq)
            feeds.append(feed)
        self._settling = {
            feed: self._feeds[feed].have for feed in self._moved if feed in self._feeds
        }
        self._moved.clear()
        return self._tell(feeds)

    def _tell(self, feeds: Iterable[bytes]) -> list[Heads]:
        pairs: list[tuple[bytes, int]] = []
        for feed in sorted(feeds):
            state = self._feeds.get(feed)
            if state is not None and state.worth_telling():
                state.told = state.have if state.told < 0 else state.stable
                state.told_round = self._round
                pairs.append((feed, state.told))
        return _chunked(pairs)

    # --- what the peer says -------------------------------------------------

    def on_heads(self, heads: Heads) -> None:
        """Record what the peer offers of the feeds in scope; it replicates
        them too. Feeds out of scope are remembered, not fetched (see
        :data:`MENTIONED_FEEDS`).

        May come any time, in several messages; an offer never goes down.
        """
        for feed, seq in heads.heads:
            state = self._feeds.get(feed)
            if state is None:
                self._mention(feed, seq)
                continue
            state.shared = True
            self._to_announce.add(feed)
            # The peer says it holds ``seq``: as far as it knows, we told it
            # no more (it may have forgotten, or our word crossed its own).
            state.told = min(state.told, seq)
            state.offered = max(state.offered, seq)
            if seq > state.target:
                state.target = seq
                self._wake(feed)

    def on_gap(self, feed: bytes, first: int, last: int) -> None:
        """The peer likely holds ``feed`` up to ``last``: fetch it if it does.

        For gaps found by gossip (:meth:`GapBuffer.missing`): the peer that
        forwarded a later entry stored its chain. Unlike an offer in ``heads``,
        a batch that ends before ``last`` is no fault. ``first`` is only the
        caller's view of the gap: the plan starts after the reported head.
        """
        state = self._feeds.get(feed)
        if state is not None and first <= last and last > state.target:
            state.target = last
            self._wake(feed)

    def on_batch(self, batch: EntryBatch, now: float) -> BatchOutcome:
        """Check an ``entries`` message and hand out what can be ingested now.

        Answers to requests no longer wanted, and the second answer to a
        request sent twice, are dropped quietly. ``now`` is when it arrived.
        """
        request = self._requests.pop(batch.request, None)
        if request is None:
            return self._stray(batch)
        if request.phase is _Phase.RESENT:
            self._tolerate(batch.request)  # its first sending may be answered too
        phase = request.phase
        request.move(_Event.ANSWER)
        # A peer answers in turn: the requests sent after this one waited
        # behind it, so their clocks start now (a slow link is not a dead
        # one). Those sent before it get no more time: it skipped them.
        for waiting in self._requests.values():
            if waiting.sent > request.sent and waiting.deadline != math.inf:
                waiting.deadline = max(waiting.deadline, now + self._timeout)
        if phase is _Phase.ORPHAN:
            return BatchOutcome()
        want = request.want
        state = self._feeds[want.feed]
        if want.newest_first:
            return self._on_preview(state, want, batch)
        return self._on_range(state, want, batch)

    def on_ingested(self, feed: bytes, latest_seq: int) -> list[SyncProblem]:
        """The store's head of ``feed`` after ingesting an outcome's entries.

        Call once for each :class:`BatchOutcome` that had entries, in order
        (a driver may ingest several before it reports). If the head falls
        short of the last entry handed out, the store refused some of them:
        the feed is abandoned for this peer and a :attr:`Fault.REJECTED`
        problem returned, once: outcomes handed out before the refusal was
        known extend the refused entry, and are not judged again.
        """
        state = self._feeds.get(feed)
        if state is None:
            return []
        expected = state.expected.popleft() if state.expected else 0
        self._advance(feed, state, latest_seq)
        if latest_seq >= expected:
            return []
        state.expected.clear()
        self._abandon(state)
        detail = f"the store holds up to seq {latest_seq}, the batch went to {expected}"
        return [SyncProblem(Fault.REJECTED, feed, None, detail)]

    def on_local_head(self, feed: bytes, latest_seq: int) -> None:
        """The store's head of ``feed`` moved for another reason.

        Own posts, gossip, or sync from another peer: the plan skips what is
        now held. Judges nobody.
        """
        state = self._feeds.get(feed)
        if state is not None:
            self._advance(feed, state, latest_seq)

    # --- what the node decides ----------------------------------------------

    def set_scope(self, scope: Collection[bytes], heads: Mapping[bytes, int]) -> None:
        """Follow a new scope: feeds leaving it are dropped (their requests'
        answers are ignored), feeds joining it start at ``heads`` (absent: 0).

        The peer's offers of joining feeds are unknown until it sends
        ``heads`` again (or :meth:`on_gap` hints).
        """
        wanted = frozenset(scope)
        for feed in [feed for feed in self._feeds if feed not in wanted]:
            state = self._feeds.pop(feed)
            self._abandon(state)
            self._queued.pop(feed, None)
            if state.shared:
                self._mention(feed, state.offered)
        for feed in wanted:
            if feed not in self._feeds:
                self._add_feed(feed, heads.get(feed, 0))

    def set_urgent(self, urgent: Collection[bytes]) -> None:
        """Mark the feeds a person waits for now; they go first from here on."""
        self._urgent = frozenset(urgent)
        for feed, state in self._feeds.items():
            state.urgent = feed in self._urgent
        for queue in self._queues.values():
            queue.clear()
        for feed in self._queued:
            self._queued[feed] = self._feeds[feed].urgent
            self._queues[self._queued[feed]].append(feed)

    # --- time -----------------------------------------------------------------

    def expire(self, now: float) -> list[SyncProblem]:
        """Handle the requests past their deadline at ``now``.

        The first timeout queues the same request to be sent again by
        :meth:`next_requests`; the second gives it up, plans the range again
        and reports the peer as :attr:`Fault.UNRESPONSIVE` (the driver may
        well disconnect).
        """
        problems: list[SyncProblem] = []
        for request_id, request in list(self._requests.items()):
            if request.deadline > now:
                continue
            phase = request.phase
            if request.move(_Event.TIMEOUT):
                request.deadline = math.inf  # due: next_requests sends it again
                continue
            del self._requests[request_id]
            self._tolerate(request_id)  # a late answer is no fault
            if phase is _Phase.ORPHAN:
                continue
            want = request.want
            self._rewind(self._feeds[want.feed], want)
            detail = f"no answer to {want.first}..{want.last} after two tries"
            problems.append(SyncProblem(Fault.UNRESPONSIVE, want.feed, request_id, detail))
        return problems

    def next_requests(self, now: float) -> list[Want]:
        """The ``want`` messages to send now (``now`` starts their deadlines).

        First any request due again after a timeout, then new ones while
        fewer than ``window`` are outstanding: urgent feeds first, each feed
        in turn, each feed's oldest range first. Never a feed out of scope,
        never a seq already held (as last reported).
        """
        wants: list[Want] = []
        for request_id, request in list(self._requests.items()):
            if request.phase is not _Phase.DUE:
                continue
            want = request.want
            state = self._feeds[want.feed]
            if want.first <= state.have:
                # The store moved on meanwhile: rather than ask again for what
                # it holds, close this one and plan the rest afresh.
                self._cancel(request_id)
                self._rewind(state, want)
                continue
            request.move(_Event.RESEND)
            request.deadline, request.sent = now + self._timeout, self._sends
            self._sends += 1
            wants.append(want)
        while len(self._requests) < self._window:
            new = self._next_want(now)
            if new is None:
                break
            wants.append(new)
        return wants

    # --- inside ---------------------------------------------------------------

    def _add_feed(self, feed: bytes, have: int) -> None:
        state = _Feed(have=have, urgent=feed in self._urgent, frontier=have + 1, stable=have)
        self._feeds[feed] = state
        self._to_announce.add(feed)
        offered = self._mentioned.pop(feed, None)
        if offered is not None:
            state.shared, state.offered, state.target = True, offered, offered
            self._wake(feed)

    def _mention(self, feed: bytes, seq: int) -> None:
        offered = max(seq, self._mentioned.pop(feed, 0))
        self._mentioned[feed] = offered  # now the most recent
        if len(self._mentioned) > MENTIONED_FEEDS:
            del self._mentioned[next(iter(self._mentioned))]

    def _wake(self, feed: bytes) -> None:
        state = self._feeds[feed]
        if feed not in self._queued and state.has_work():
            self._queued[feed] = state.urgent
            self._queues[state.urgent].append(feed)

    def _tolerate(self, request_id: int) -> None:
        self._tolerated[request_id] = None
        if len(self._tolerated) > _TOLERATED_IDS:
            del self._tolerated[next(iter(self._tolerated))]

    def _stray(self, batch: EntryBatch) -> BatchOutcome:
        if batch.request in self._tolerated:
            del self._tolerated[batch.request]
            return BatchOutcome()
        if batch.request >= self._next_id:
            fault, detail = Fault.UNKNOWN_REQUEST, "an answer to a request never sent"
        else:
            fault, detail = Fault.UNEXPECTED_BATCH, "a second answer to one request"
        return BatchOutcome(problems=(SyncProblem(fault, None, batch.request, detail),))

    def _issue(self, feed: bytes, first: int, last: int, newest_first: bool, now: float) -> Want:
        # A connection would need 2**32 requests (a trillion entries) to wrap.
        request_id = self._next_id % _REQUEST_IDS
        self._next_id += 1
        want = Want(request_id, feed, first, last, newest_first)
        self._requests[request_id] = _Request(want, _Phase.SENT, now + self._timeout, self._sends)
        self._sends += 1
        return want

    def _next_want(self, now: float) -> Want | None:
        for urgent in (True, False):
            queue = self._queues[urgent]
            for _ in range(len(queue)):
                feed = queue.popleft()
                state = self._feeds[feed]
                want = self._want_for(feed, state, now)
                if want is not None or state.has_work():
                    queue.append(feed)  # its turn is over: back of the line
                else:
                    del self._queued[feed]  # woken again when there is work
                if want is not None:
                    return want
        return None

    def _want_for(self, feed: bytes, state: _Feed, now: float) -> Want | None:
        if state.abandoned:
            return None
        self._trim(feed, state)
        if (
            state.urgent
            and state.preview is _Preview.NOT_ASKED
            and self._preview_size
            and state.target - (state.frontier - 1) > self._preview_size
        ):
            want = self._issue(
                feed, state.target - self._preview_size + 1, state.target, True, now
            )
            state.preview, state.preview_request = _Preview.ASKED, want.request
            return want
        # Enough answers wait for earlier ones: only what unblocks them (a
        # feed's first range) may go out, so parked batches stay bounded.
        deep = self._parked >= self._window
        for index, slot in enumerate(state.slots):
            if slot.request is None and slot.arrived is None:
                if index and deep:
                    return None
                want = self._issue(feed, slot.first, slot.last, False, now)
                slot.request = want.request
                return want
        if state.frontier > state.target or (state.slots and deep):
            return None
        last = min(state.target, state.frontier + self._range - 1)
        want = self._issue(feed, state.frontier, last, False, now)
        state.slots.append(_Slot(state.frontier, last, want.request))
        state.frontier = last + 1
        return want

    def _on_preview(self, state: _Feed, want: Want, batch: EntryBatch) -> BatchOutcome:
        state.preview, state.preview_request = _Preview.DONE, None
        accepted, problem = _scan(want, batch.entries)
        # A short preview is no fault: the backfill checks the peer's offer.
        preview = tuple((seq, raw) for seq, raw in accepted if seq > state.have)
        if problem is None:
            return BatchOutcome(want.feed, preview=preview)
        self._abandon(state)
        return BatchOutcome(want.feed, preview=preview, problems=(problem,))

    def _on_range(self, state: _Feed, want: Want, batch: EntryBatch) -> BatchOutcome:
        slot = next(slot for slot in state.slots if slot.request == want.request)
        slot.request = None
        accepted, problem = _scan(want, batch.entries)
        top = accepted[-1][0] if accepted else want.first - 1
        if problem is None and top < want.last:
            if not batch.done and not accepted:
                problem = SyncProblem(
                    Fault.NO_PROGRESS, want.feed, want.request, "no entry, yet not done"
                )
            elif batch.done and top < state.offered:
                detail = f"done at seq {top}, but the peer offered {state.offered}"
                problem = SyncProblem(Fault.SHORT_BATCH, want.feed, want.request, detail)
        slot.arrived, slot.last = accepted, top
        self._parked += 1
        index = state.slots.index(slot)
        if problem is None and top < want.last:
            if batch.done:
                # The peer holds no more (a gap hint was optimistic): forget
                # what lies beyond; later requests for it are answered empty.
                self._drop_slots(state.slots[index + 1 :])
                del state.slots[index + 1 :]
                state.target, state.frontier = top, top + 1
            else:
                # Cut by the sender's size bound: ask for the rest next.
                state.slots.insert(index + 1, _Slot(top + 1, want.last))
                self._wake(want.feed)
        if top < slot.first:
            self._drop_slots([slot])
            state.slots.remove(slot)
        entries = self._release(state)
        if problem is None:
            return BatchOutcome(want.feed, entries)
        self._abandon(state)
        return BatchOutcome(want.feed, entries, problems=(problem,))

    def _release(self, state: _Feed) -> tuple[RawEntry, ...]:
        """Hand out the answered ranges at the front, in order."""
        run: list[RawEntry] = []
        top = 0
        while state.slots and state.slots[0].arrived is not None:
            slot = state.slots.pop(0)
            self._parked -= 1
            for seq, raw in slot.arrived or ():
                if seq > state.have:
                    run.append(raw)
                    top = seq
        if run:
            state.expected.append(top)
        return tuple(run)

    def _advance(self, feed: bytes, state: _Feed, latest_seq: int) -> None:
        # Called on every planner for every round of gossip a node stores;
        # the feed has no plan to trim in nearly every call.
        if latest_seq <= state.have:
            return
        state.have = latest_seq
        self._moved.add(feed)
        if state.frontier <= latest_seq:
            state.frontier = latest_seq + 1
        if state.slots:
            self._trim(feed, state)

    def _trim(self, feed: bytes, state: _Feed) -> None:
        """Cut what the store holds out of the ranges still to be asked.

        An answer parked behind ranges cut away here is at the front now,
        where only the answer to an earlier range would have handed it out:
        it is dropped, and what of its range the store lacks is asked again.
        """
        if not state.slots:
            return  # nothing planned for the feed: the usual case while gossip runs
        kept: list[_Slot] = []
        for slot in state.slots:
            if slot.request is None and slot.arrived is None:
                if slot.last <= state.have:
                    continue
                slot.first = max(slot.first, state.have + 1)
            kept.append(slot)
        state.slots = kept
        while state.slots and state.slots[0].arrived is not None:
            front = state.slots[0]
            front.arrived = None
            self._parked -= 1
            if front.last > state.have:
                front.first = max(front.first, state.have + 1)
                self._wake(feed)
                break
            del state.slots[0]

    def _rewind(self, state: _Feed, want: Want) -> None:
        """A request closed unanswered: its range is to be asked again (a
        preview is not: the backfill covers it)."""
        if want.newest_first:
            state.preview, state.preview_request = _Preview.DONE, None
            return
        for slot in state.slots:
            if slot.request == want.request:
                slot.request = None
        self._trim(want.feed, state)
        self._wake(want.feed)

    def _drop_slots(self, slots: Iterable[_Slot]) -> None:
        """Forget ``slots`` (the caller removes them): cancel, unpark."""
        for slot in slots:
            self._cancel(slot.request)
            if slot.arrived is not None:
                self._parked -= 1

    def _cancel(self, request_id: int | None) -> None:
        if request_id is None:
            return
        # An orphan keeps its window place until answered or timed out: the
        # peer is still working on it.
        if not self._requests[request_id].move(_Event.CANCEL):
            del self._requests[request_id]
            self._tolerate(request_id)

    def _abandon(self, state: _Feed) -> None:
        """Stop syncing this feed from this peer; its requests' answers are ignored."""
        state.abandoned = True
        self._drop_slots(state.slots)
        state.slots.clear()
        self._cancel(state.preview_request)
        state.preview_request = None


def _chunked(pairs: Sequence[tuple[bytes, int]]) -> list[Heads]:
    """``heads`` messages of at most :data:`~gossip.wire.MAX_HEADS` pairs each."""
    return [Heads(tuple(pairs[i : i + MAX_HEADS])) for i in range(0, len(pairs), MAX_HEADS)]


# --- entries ahead of a gap -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Held:
    raw: RawEntry
    added: float
    size: int


@dataclass(slots=True)
class _HeldFeed:
    head: int
    seqs: list[int] = field(default_factory=list)  # sorted: the farthest ahead is last
    entries: dict[int, _Held] = field(default_factory=dict)


class GapBuffer:
    """Entries that arrived ahead of the local head, held until the gap fills.

    Gossip may bring seq 12 of a feed whose store holds up to 9: the store
    refuses it (a gap), so it waits here while sync fetches 10 and 11
    (:meth:`missing`, then :meth:`SyncPlanner.on_gap`), and enters the store
    after them (:meth:`ready`). Preview entries wait here too.

    Bounded: ``per_feed`` entries per feed, ``total`` entries and
    ``max_bytes`` bytes in all; past a bound the entry farthest ahead of its
    feed's head goes first (it is the least likely to be needed soon), and
    any entry is dropped ``ttl`` seconds after it came. One entry per seq: the
    first copy stays. Entries here are NOT trusted: the store checks them at
    ingest, so whatever is lost or refused here is fetched again by sync. A
    driver that checks signatures before :meth:`add` keeps forgeries from
    pushing real entries out.
    """

    def __init__(
        self,
        *,
        per_feed: int = 64,
        total: int = 4096,
        max_bytes: int = 8 * 1024 * 1024,
        ttl: float = 60.0,
    ) -> None:
        if per_feed < 1 or total < 1 or max_bytes < 1 or not ttl > 0:
            raise InvalidArgument("the bounds and the ttl of a gap buffer must be positive")
        self._per_feed = per_feed
        self._total = total
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._feeds: dict[bytes, _HeldFeed] = {}
        self._count = 0
        self._bytes = 0
        # (time added, feed, seq) in arrival order, for the ttl.
        self._arrivals: deque[tuple[float, bytes, int]] = deque()

    def __len__(self) -> int:
        return self._count

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def held(self, feed: bytes) -> list[int]:
        """The seqs held of ``feed``, ascending."""
        state = self._feeds.get(feed)
        return list(state.seqs) if state else []

    def add(self, feed: bytes, seq: int, raw: RawEntry, now: float, *, head: int) -> bool:
        """Hold ``raw``, entry ``seq`` of ``feed``, while the store holds up to ``head``.

        Returns whether it is held: not if it is not ahead of a gap
        (``seq <= head + 1``: ingest it instead), if that seq is held already,
        or if the bounds pushed it out at once.
        """
        self.expire(now)
        state = self._feeds.get(feed)
        if state is None:
            state = self._feeds[feed] = _HeldFeed(head)
        self._set_head(state, head)
        size = _entry_size(raw)
        if seq <= state.head + 1 or seq in state.entries or size > self._max_bytes:
            self._forget_if_empty(feed, state)
            return False
        state.entries[seq] = _Held(raw, now, size)
        insort(state.seqs, seq)
        self._count += 1
        self._bytes += size
        self._arrivals.append((now, feed, seq))
        while len(state.entries) > self._per_feed:
            self._drop(state, state.seqs[-1])
        while self._count > self._total or self._bytes > self._max_bytes:
            self._evict_farthest()
        held = self._feeds.get(feed)
        return held is not None and seq in held.entries

    def ready(self, feed: bytes, head: int) -> list[RawEntry]:
        """The held entries that extend ``head`` (the store's head), in order.

        They leave the buffer; ingest them, then call again with the new head
        if more may follow. Entries at or below ``head`` are dropped.
        """
        state = self._feeds.get(feed)
        if state is None:
            return []
        self._set_head(state, head)
        run: list[RawEntry] = []
        while state.seqs and state.seqs[0] == state.head + 1 + len(run):
            run.append(self._drop(state, state.seqs[0]).raw)
        self._forget_if_empty(feed, state)
        return run

    def missing(self) -> list[tuple[bytes, int, int]]:
        """The gaps to fetch: ``(feed, first, last)`` between each feed's head
        (as last reported to :meth:`add` or :meth:`ready`) and its first held
        entry, sorted by feed."""
        return sorted(
            (feed, state.head + 1, state.seqs[0] - 1)
            for feed, state in self._feeds.items()
            if state.seqs and state.seqs[0] > state.head + 1
        )

    def expire(self, now: float) -> int:
        """Drop entries held longer than the ttl at ``now``; return how many."""
        dropped = 0
        while self._arrivals and self._arrivals[0][0] + self._ttl <= now:
            added, feed, seq = self._arrivals.popleft()
            state = self._feeds.get(feed)
            held = state.entries.get(seq) if state else None
            # The record may be stale: the entry left, or came again later.
            if state is not None and held is not None and held.added == added:
                self._drop(state, seq)
                self._forget_if_empty(feed, state)
                dropped += 1
        return dropped

    def _set_head(self, state: _HeldFeed, head: int) -> None:
        state.head = max(state.head, head)
        while state.seqs and state.seqs[0] <= state.head:
            self._drop(state, state.seqs[0])

    def _drop(self, state: _HeldFeed, seq: int) -> _Held:
        held = state.entries.pop(seq)
        state.seqs.remove(seq)
        self._count -= 1
        self._bytes -= held.size
        return held

    def _forget_if_empty(self, feed: bytes, state: _HeldFeed) -> None:
        if not state.entries:
            self._feeds.pop(feed, None)

    def _evict_farthest(self) -> None:
        # A scan over the feeds holding entries: evictions only happen when
        # the buffer is full, and the per-feed bound keeps one feed cheap.
        feed, state = max(
            self._feeds.items(), key=lambda item: (item[1].seqs[-1] - item[1].head, item[0])
        )
        self._drop(state, state.seqs[-1])
        self._forget_if_empty(feed, state)
