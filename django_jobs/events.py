"""Global events: follow a queue's ``events`` stream from any process.

Every state change of a job is one event in its queue's stream (see
docs/architecture.md#the-events-stream: a script call that moves several jobs writes one
entry per event kind naming them all, and a listener gets one :class:`Event` per job): ``waiting``, ``scheduled``, ``active``, ``completed``, ``retrying``,
``failed``, ``cancelled``, ``cancel_requested``, ``stalled``, ``released``, for a flow's
parent ``waiting_children`` (docs/flows.md), and from flow control (docs/flow-control.md)
``rate_limited`` and ``progress`` (with ``pg``, the JSON value). The stream is
capped at ``EVENTS_MAXLEN`` entries, so a listener that falls far behind misses the oldest.

>>> events = QueueEvents("default", types={"completed", "failed"})  # doctest: +SKIP
>>> for event in events.listen(timeout=5):  # doctest: +SKIP
...     print(event.type, event.job_id)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from django_jobs.engine import get_engine
from django_jobs.engine.streams import entry_before, expand_entry, split_event_id

__all__ = ["FINAL_EVENTS", "Event", "QueueEvents", "wait_for_result"]

#: Events after which a job never changes again.
FINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})
#: Longest single XREAD BLOCK, seconds (below the blocking client's socket timeout).
MAX_BLOCK = 10.0
#: Entries read per XREAD call at most.
BATCH = 500


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a queue's events stream: one job's (a batch entry holds one per job)."""

    #: The event id: the stream entry id (``"<ms>-<seq>"``), or for the i-th job of a batch
    #: entry ``"<ms>-<seq>:<i>"``. Pass it as ``last_id`` to resume after this event.
    id: str
    queue: str
    #: The event: ``"completed"``, ``"failed"``, ...
    type: str
    job_id: str
    #: Other fields of the entry (``why``, ``delay``...).
    fields: dict[str, str] = field(default_factory=dict)


class QueueEvents:
    """Subscribe to the events of ``queue`` with blocking reads (no polling).

    ``last_id`` says where to start: ``"$"`` (the default) only new events, ``"0"`` every
    event still in the stream, or the :attr:`Event.id` of the last event handled, to resume
    where a previous listener stopped. ``types`` keeps only those event types.
    :attr:`last_id` always holds the id of the last entry read (filtered out or not). An entry
    may hold the same event of several jobs (a batch, docs/observability.md#batch-entries): each job
    gets its own :class:`Event`.
    """

    def __init__(self, queue: str = "default", *, last_id: str = "$", types: Iterable[str] | None = None) -> None:
        engine = get_engine()
        shards = engine.shards(queue)
        if len(shards) > 1:
            # One stream per shard (docs/scaling.md#sharded-queues): a listener follows one of them.
            from django_jobs.exceptions import ConfigurationError

            raise ConfigurationError(
                f"Queue {queue!r} has {len(shards)} shards, each with its own events stream: "
                f"listen to one shard, QueueEvents({shards[0]!r}) ... QueueEvents({shards[-1]!r})."
            )
        self.queue = queue
        self.key = engine.keys(queue).events
        self.types = frozenset(types) if types is not None else None
        # The events of a batch entry this listener already handled (resuming at "<entry id>:<i>").
        self._skip: tuple[str, int] | None = None
        if last_id == "$":
            # "$" pinned now, so events between two reads are never skipped.
            last_id = engine.events_tip(queue)
        else:
            entry_id, index = split_event_id(last_id)
            if index is not None:
                # Inside a batch entry: read that entry again and skip its first index + 1 jobs.
                self._skip = (entry_id, index + 1)
                last_id = entry_before(entry_id)
        self.last_id = last_id

    def read(self, timeout: float | None = 0) -> list[Event]:
        """Return the next events, waiting up to ``timeout`` seconds for one (``None``: forever, 0: no wait)."""
        engine = get_engine()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_BLOCK if deadline is None else max(0.0, deadline - time.monotonic())
            block = int(min(left, MAX_BLOCK) * 1000)
            reply = engine.events_read(self.queue, self.last_id, count=BATCH, block_ms=block)
            events: list[Event] = []
            for entry_id, entry in reply or ():
                self.last_id = entry_id
                handled = 0
                if self._skip is not None:
                    if self._skip[0] == entry_id:
                        handled = self._skip[1]
                    self._skip = None
                # A batch entry holds the same event of several jobs: one Event per job.
                for event_id, fields in expand_entry(entry_id, entry)[handled:]:
                    kind = fields.pop("e", "")
                    if self.types is None or kind in self.types:
                        events.append(Event(event_id, self.queue, kind, fields.pop("j", ""), fields))
            if events or (reply and not block) or (deadline is not None and time.monotonic() >= deadline):
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
    # On a sharded queue the job's events are on its own shard's stream.
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
