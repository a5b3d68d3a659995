"""Global events: follow a queue's ``events`` stream from any process.

Every state change of a job is one event in its queue's stream (see
docs/architecture.md#the-events-stream: a script call that moves several jobs writes one
entry per event kind naming them all, and a listener gets one :class:`Event` per job): ``waiting``, ``scheduled``, ``active``, ``completed``, ``retrying``,
``failed``, ``cancelled``, ``cancel_requested``, ``stalled``, ``released``, for a flow's
parent ``waiting_children`` (docs/flows.md), and from flow control (docs/flow-control.md)
``rate_limited`` and ``progress`` (with ``pg``, the JSON value). The stream is
capped at ``EVENTS_MAXLEN`` entries, so a listener that falls far behind misses the oldest.

A sharded queue (docs/scaling.md#sharded-queues) has one stream per shard; a listener of the
queue follows them all as one, and its event ids carry a position in each of them
(:func:`split_position`).

>>> events = QueueEvents("default", types={"completed", "failed"})  # doctest: +SKIP
>>> for event in events.listen(timeout=5):  # doctest: +SKIP
...     print(event.type, event.job_id)
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from django_jobs.engine import get_engine
from django_jobs.engine.keys import SHARD_SEP, base_queue
from django_jobs.engine.streams import (
    Entry,
    entry_before,
    expand_entry,
    split_event_id,
    stream_id_key,
)

__all__ = ["FINAL_EVENTS", "Event", "QueueEvents", "join_position", "split_position", "wait_for_result"]

#: Events after which a job never changes again.
FINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})
#: Longest single XREAD BLOCK, seconds (below the blocking client's socket timeout).
MAX_BLOCK = 10.0
#: Entries read per XREAD call at most (per stream: each shard of a sharded queue gives up to this many).
BATCH = 500
#: Between the shard index and the positions of a sharded queue's event id (``"2@<p0>,<p1>,..."``).
SHARD_MARK = "@"
#: Between the positions of the shards.
POSITION_SEP = ","


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a queue's events stream: one job's (a batch entry holds one per job)."""

    #: The event id: the stream entry id (``"<ms>-<seq>"``), or for the i-th job of a batch
    #: entry ``"<ms>-<seq>:<i>"``. On a sharded queue ``"<shard>@<p0>,<p1>,..."``: the index of
    #: the shard whose stream it came from, and the listener's position in every shard's stream
    #: just after it (:func:`split_position`). Pass it as ``last_id`` to resume after this event.
    id: str
    queue: str
    #: The event: ``"completed"``, ``"failed"``, ...
    type: str
    job_id: str
    #: Other fields of the entry (``why``, ``delay``...).
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def shard(self) -> int | None:
        """Return the index of the shard whose stream the event came from (None: a listener of one stream).

        >>> Event("2@5-0,7-1:3,9-0", "hot", "completed", "a.2").shard
        2
        """
        head, sep, _ = self.id.partition(SHARD_MARK)
        return int(head) if sep else None


def join_position(positions: Sequence[str], shard: int | None = None) -> str:
    """Return the id of a position in the streams of a sharded queue's shards.

    ``positions[i]`` is the id of the last event read on shard ``i`` (an entry id, or
    ``"<entry id>:<i>"`` inside a batch entry). With ``shard``, the id of an event of that
    shard (:attr:`Event.id`); without, a listener's :attr:`QueueEvents.last_id`.

    >>> join_position(["5-0", "7-1:3", "0-0"], shard=1)
    '1@5-0,7-1:3,0-0'
    """
    joined = POSITION_SEP.join(positions)
    return joined if shard is None else f"{shard}{SHARD_MARK}{joined}"


def split_position(position_id: str) -> tuple[int | None, list[str]]:
    """Return ``(shard, positions)`` of an id made by :func:`join_position` (``shard`` None: no event's).

    >>> split_position("1@5-0,7-1:3,0-0")
    (1, ['5-0', '7-1:3', '0-0'])

    Raises:
        ValueError: not such an id.
    """
    head, sep, rest = position_id.rpartition(SHARD_MARK)
    positions = rest.split(POSITION_SEP)
    try:
        shard = int(head) if sep else None
        for position in positions:
            stream_id_key(split_event_id(position)[0])
    except ValueError:
        raise ValueError(
            f"{position_id!r} is not the id of an event of a sharded queue (e.g. '1@5-0,7-1:3,0-0')."
        ) from None
    if len(positions) < 2 or (shard is not None and not 0 <= shard < len(positions)):
        raise ValueError(f"{position_id!r} is not the id of an event of a sharded queue (e.g. '1@5-0,7-1:3,0-0').")
    return shard, positions


@dataclass(slots=True)
class _Place:
    """Where a listener is in one events stream."""

    #: The stream's queue (a shard's name on a sharded queue).
    queue: str
    #: XREAD reads the entries after this id.
    after: str
    #: The id of the last event read (an entry id, or ``"<entry id>:<i>"``): where to resume.
    position: str
    #: The events of a batch entry already handled (resuming at ``"<entry id>:<i>"``).
    skip: tuple[str, int] | None = None

    @classmethod
    def at(cls, queue: str, position: str) -> _Place:
        """Return the place just after event ``position`` (``"0"``: before the stream's first entry)."""
        entry_id, index = split_event_id(position)
        if index is None:
            return cls(queue, position, position)
        # Inside a batch entry: read that entry again and skip its first index + 1 jobs.
        return cls(queue, entry_before(entry_id), position, (entry_id, index + 1))

    def take(self, entry_id: str, entry: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
        """Return the events of entry ``entry_id`` not handled yet, ``(event id, fields)``; move past it."""
        self.after = entry_id
        handled = 0
        if self.skip is not None:
            if self.skip[0] == entry_id:
                handled = self.skip[1]
            self.skip = None
        # A batch entry holds the same event of several jobs: one event per job.
        events = expand_entry(entry_id, entry)
        return events[handled:] if handled else events


class QueueEvents:
    """Subscribe to the events of ``queue`` with blocking reads (no polling).

    ``last_id`` says where to start: ``"$"`` (the default) only new events, ``"0"`` every
    event still in the stream, or the :attr:`Event.id` of the last event handled, to resume
    where a previous listener stopped. ``types`` keeps only those event types.
    :attr:`last_id` always holds the id of the last entry read (filtered out or not). An entry
    may hold the same event of several jobs (a batch, docs/observability.md#batch-entries): each job
    gets its own :class:`Event`.

    On a sharded queue (docs/scaling.md#sharded-queues) the listener follows every shard's
    stream at once: each read takes up to :data:`BATCH` entries of each shard (a busy shard does
    not hold the others back), in the order of each shard's stream; across shards a read's events
    are merged by their entry ids (Redis ms), and no order is promised. Its event ids are
    ``"<shard>@<p0>,<p1>,..."`` (:func:`join_position`): resuming from one reads on each shard
    exactly the events after the listener's position there when it returned that event.
    :attr:`last_id` is ``"<p0>,<p1>,..."``. ``QueueEvents("hot#2")`` follows one shard alone.

    Raises:
        ValueError: ``last_id`` is not an id of this queue's kind (a sharded queue's id for a
        queue that is not sharded, or the other way round).
    """

    def __init__(self, queue: str = "default", *, last_id: str = "$", types: Iterable[str] | None = None) -> None:
        engine = get_engine()
        shards = engine.shards(queue)
        self.queue = queue
        self.types = frozenset(types) if types is not None else None
        self._sharded = len(shards) > 1
        if not self._sharded:
            if last_id == "$":
                # "$" pinned now, so events between two reads are never skipped.
                last_id = engine.events_tip(queue)
            elif POSITION_SEP in last_id:
                last_id = _shard_position(queue, last_id)
            self._places = [_Place.at(queue, last_id)]
            self.last_id = self._places[0].after
            return
        if last_id == "$":
            # Every shard's tip pinned now, before the first look: nothing is missed.
            positions = engine.events_tips(shards)
        elif last_id == "0":
            positions = ["0-0"] * len(shards)
        else:
            if POSITION_SEP not in last_id:
                raise ValueError(
                    f"{last_id!r} is not an event id of sharded queue {queue!r} (its ids look like "
                    f"'1@5-0,7-1:3,...', one position per shard): pass '$', '0' or an Event.id of a listener of {queue!r}."
                )
            _shard, positions = split_position(last_id)
            # A shard added since (SHARDS raised) is read from its start; positions of shards
            # removed since (SHARDS lowered) are dropped, as those shards are no longer served.
            positions = (positions + ["0-0"] * len(shards))[: len(shards)]
        self._places = [_Place.at(shard, position) for shard, position in zip(shards, positions, strict=True)]
        self.last_id = join_position([place.position for place in self._places])

    def read(self, timeout: float | None = 0) -> list[Event]:
        """Return the next events, waiting up to ``timeout`` seconds for one (``None``: forever, 0: no wait)."""
        engine = get_engine()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_BLOCK if deadline is None else max(0.0, deadline - time.monotonic())
            block = int(min(left, MAX_BLOCK) * 1000)
            if self._sharded:
                places = self._places
                replies = engine.events_read_many([p.queue for p in places], [p.after for p in places], count=BATCH, block_ms=block)
                events = self._merge(replies)
                self.last_id = join_position([place.position for place in places])
            else:
                place = self._places[0]
                replies = [engine.events_read(self.queue, place.after, count=BATCH, block_ms=block) or []]
                events = []
                for entry_id, entry in replies[0]:
                    for event_id, fields in place.take(entry_id, entry):
                        kind = fields.pop("e", "")
                        if self._keep(kind):
                            events.append(Event(event_id, self.queue, kind, fields.pop("j", ""), fields))
                self.last_id = place.after
            if events or (any(replies) and not block) or (deadline is not None and time.monotonic() >= deadline):
                return events

    def _keep(self, kind: str) -> bool:
        return self.types is None or kind in self.types

    def _merge(self, replies: list[list[Entry]]) -> list[Event]:
        """Return the events of one read of every shard, merged by entry id; advance each shard's position."""
        places = self._places
        read = [(shard, entries) for shard, entries in enumerate(replies) if entries]
        rows: Iterable[tuple[int, str, dict[str, str]]]
        if len(read) == 1:
            shard, entries = read[0]
            rows = ((shard, entry_id, entry) for entry_id, entry in entries)
        else:
            # Each shard's entries keep their stream order (merge keeps the order within an input).
            rows = heapq.merge(
                *[[(shard, entry_id, entry) for entry_id, entry in entries] for shard, entries in read],
                key=lambda row: stream_id_key(row[1]),
            )
        positions = [place.position for place in places]
        events: list[Event] = []
        for shard, entry_id, entry in rows:
            for event_id, fields in places[shard].take(entry_id, entry):
                positions[shard] = event_id
                kind = fields.pop("e", "")
                if self._keep(kind):
                    events.append(Event(join_position(positions, shard), self.queue, kind, fields.pop("j", ""), fields))
        for place, position in zip(places, positions, strict=True):
            place.position = position
        return events

    def listen(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events as they come; stop after ``timeout`` seconds without one (``None``: never)."""
        while True:
            events = self.read(timeout)
            if not events:
                return
            yield from events

    def __iter__(self) -> Iterator[Event]:
        return self.listen()


def _shard_position(queue: str, last_id: str) -> str:
    """Return the position in shard ``queue`` (``"hot#2"``) of a sharded queue's event id.

    Raises:
        ValueError: ``queue`` is not a shard, or the id has no position for it.
    """
    shard = queue.partition(SHARD_SEP)[2]
    _event_shard, positions = split_position(last_id)
    if not shard.isdigit() or int(shard) >= len(positions):
        raise ValueError(
            f"{last_id!r} is an event id of a sharded queue, with no position in the stream of {queue!r}: "
            f"pass '$', '0' or an Event.id of a listener of {queue!r} or of {base_queue(queue)!r}."
        )
    return positions[int(shard)]


class Waitable(Protocol):
    """What :func:`wait_for_result` needs of a result (a :class:`~django_jobs.tasks.JobResult`)."""

    @property
    def id(self) -> str: ...

    @property
    def queue(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def is_finished(self) -> bool: ...

    def refresh(self) -> None: ...


def wait_for_result[R: Waitable](result: R, timeout: float = 30.0) -> R:
    """Block until job ``result`` is finished (refreshed in place) and return it, without polling.

    Listens to the job's queue's events; raises :class:`TimeoutError` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    # On a sharded queue the job's events are on its own shard's stream: follow that one only.
    events = QueueEvents(get_engine().shard_of(result.queue, result.id), types=FINAL_EVENTS)  # pinned before the first look: nothing is missed
    result.refresh()
    while not result.is_finished:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"Job {result.id!r} did not finish within {timeout} s (state {result.state!r}).")
        # Re-read the job at least every MAX_BLOCK s in case its event was trimmed away.
        found = events.read(min(left, MAX_BLOCK))
        if not found or any(event.job_id == result.id for event in found):
            result.refresh()
    return result
