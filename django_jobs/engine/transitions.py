"""Transitions: thin Python wrappers over the Lua scripts that change a job's state.

Each method builds one script's KEYS and ARGV (see the header of ``lua/<name>.lua``) and
returns its reply as plain values. Nothing here reads or writes Redis but through
:meth:`~django_jobs.engine.runner.ScriptRunner._run` and its chunked form.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Self

from django_jobs.engine.codes import raise_for_code
from django_jobs.engine.runner import ScriptRunner

#: How many due scheduled jobs one fetch promotes at most.
PROMOTE_LIMIT = 1000
#: How many expired leases one recovery call handles at most.
RECOVER_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job about to be enqueued."""

    id: str
    data: str
    priority: int = 0
    run_at_ms: int = 0
    delay_ms: int = 0
    correlation_id: str = ""
    parent_id: str = ""


def jobs_like(template: NewJob) -> Callable[[str, str], NewJob]:
    """Return ``make(id, data)``: a :class:`NewJob` equal to ``template`` but for those two.

    The jobs of one bulk enqueue share every other field. ``make`` sets the slots through
    their descriptors: ~0.4 us per job against ~1.5 us for the frozen dataclass' ``__init__``
    (``object.__setattr__`` by name for each of 7 fields).
    """
    new = object.__new__
    set_id, set_data = (getattr(NewJob, name).__set__ for name in ("id", "data"))  # the slots' descriptors
    shared = [(getattr(NewJob, name).__set__, getattr(template, name)) for name in NewJob.__dataclass_fields__ if name not in ("id", "data")]
    (s1, v1), (s2, v2), (s3, v3), (s4, v4), (s5, v5) = shared  # unrolled: a loop would cost what it saves

    def make(job_id: str, data: str) -> NewJob:
        job: NewJob = new(NewJob)
        set_id(job, job_id)
        set_data(job, data)
        s1(job, v1)
        s2(job, v2)
        s3(job, v3)
        s4(job, v4)
        s5(job, v5)
        return job

    return make


@dataclass(frozen=True, slots=True)
class NewJobs:
    """Jobs about to be enqueued that differ only in their ids and payloads: a chunk of one ``enqueue_many()``.

    Two columns and one :class:`NewJob` for what they share (``shared``: its ``id`` and ``data``
    are not used), not a :class:`NewJob` per job: :meth:`Transitions.enqueue_columns` packs
    the columns as they are (docs/performance.md, "Bulk enqueue, Python per job"). Iterating
    makes each job (:func:`jobs_like`), for a reader that wants them one by one.
    """

    ids: list[str]
    data: list[str]
    shared: NewJob

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[NewJob]:
        return map(jobs_like(self.shared), self.ids, self.data)


@dataclass(frozen=True, slots=True)
class Guard:
    """The unique key and the limit key of a job being enqueued (docs/flow-control.md)."""

    #: The unique key ("": none).
    key: str = ""
    #: "k" keep the guarded job (deduplicate) | "r" replace its arguments and run time (debounce).
    mode: str = "k"
    #: "s" guarded while waiting or scheduled | "f" also while active.
    until: str = "s"
    #: Throttle window, ms: the key stays taken this long after the enqueue (0: none).
    window_ms: int = 0
    #: The limit key ("": none), its concurrency (0: none) and rate (count 0: none).
    limit_key: str = ""
    limit_concurrency: int = 0
    limit_rate: int = 0
    limit_period_ms: int = 1000


class Claimed:
    """A job this worker holds a lease on. Read-only by convention.

    A plain slotted class, not a frozen dataclass: every claimed job builds one on the way to
    its first line, and a frozen dataclass sets each field with ``object.__setattr__`` (~4x the
    cost). Compared, hashed and printed by its fields as the dataclass was.
    """

    __slots__ = ("attempt", "correlation_id", "data", "enqueued_ms", "id", "parent_id", "queue", "token")

    queue: str
    id: str
    token: str
    data: str
    attempt: int
    enqueued_ms: int
    correlation_id: str
    parent_id: str

    def __init__(
        self, queue: str, id: str, token: str, data: str, attempt: int, enqueued_ms: int,
        correlation_id: str, parent_id: str,
    ) -> None:
        self.queue = queue
        self.id = id
        self.token = token
        self.data = data
        self.attempt = attempt
        self.enqueued_ms = enqueued_ms
        self.correlation_id = correlation_id
        self.parent_id = parent_id

    def _fields(self) -> tuple[str, str, str, str, int, int, str, str]:
        return (self.queue, self.id, self.token, self.data, self.attempt, self.enqueued_ms, self.correlation_id, self.parent_id)

    def in_queue(self, queue: str) -> Claimed:
        """The same claim reported under ``queue`` (a shard's claim under its queue's name)."""
        return Claimed(queue, *self._fields()[1:])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Claimed:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names = ("queue", "id", "token", "data", "attempt", "enqueued_ms", "correlation_id", "parent_id")
        return f"Claimed({', '.join(f'{n}={v!r}' for n, v in zip(names, self._fields(), strict=True))})"


@dataclass(slots=True, unsafe_hash=True)
class Outcome:
    """The result of running a claimed job, to settle in Redis. Read-only by convention.

    ``kind`` is an :class:`~django_jobs.engine.protocol.OutcomeKind`: ``"c"`` complete,
    ``"r"`` retry, ``"f"`` fail or ``"x"`` cancelled.

    Not frozen (every run builds one, and a frozen dataclass sets each field with
    ``object.__setattr__``: ~1 us more); compared, hashed, printed and ``dataclasses.replace``-d
    by its fields as the frozen one was.
    """

    id: str
    token: str
    kind: str
    value: str = ""
    delay_ms: int = 0
    keep_ms: int = 0


class FetchResult:
    """What one fetch call returned. Read-only by convention (a plain slotted class, as :class:`Claimed`)."""

    __slots__ = ("jobs", "limited", "next_due_ms", "paused")

    jobs: list[Claimed]
    next_due_ms: int
    paused: bool
    #: The count was cut to ``start_now`` because the queue has a concurrency limit in force.
    limited: bool

    def __init__(self, jobs: list[Claimed], next_due_ms: int, paused: bool, limited: bool = False) -> None:
        self.jobs = jobs
        self.next_due_ms = next_due_ms
        self.paused = paused
        self.limited = limited

    def in_queue(self, queue: str) -> FetchResult:
        """The same result with its jobs reported under ``queue`` (:meth:`Claimed.in_queue`)."""
        return FetchResult([c.in_queue(queue) for c in self.jobs], self.next_due_ms, self.paused, self.limited)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not FetchResult:
            return NotImplemented
        o = other
        return (self.jobs, self.next_due_ms, self.paused, self.limited) == (o.jobs, o.next_due_ms, o.paused, o.limited)

    __hash__ = None  # type: ignore[assignment]  # as the dataclass (a list field): not hashable

    def __repr__(self) -> str:
        return f"FetchResult(jobs={self.jobs!r}, next_due_ms={self.next_due_ms!r}, paused={self.paused!r}, limited={self.limited!r})"


class Recovery(tuple[int, int]):
    """``(recovered, failed)`` counts of one recovery call, with ``jobs``: ``[(job_id, what, correlation_id)]``."""

    jobs: list[tuple[str, str, str]]

    def __new__(cls, recovered: int, failed: int, jobs: list[tuple[str, str, str]]) -> Self:
        self = super().__new__(cls, (recovered, failed))
        self.jobs = jobs
        return self


class Enqueued(int):
    """One job's reply of an enqueue script: an int equal to its code, with ``enqueued_ms``.

    The code is an :class:`~django_jobs.engine.protocol.EnqueueCode` (a flow: 1 created, 0 a
    job of it existed), so ``engine.enqueue(q, jobs) == [1]`` reads as before. ``enqueued_ms``
    is the enqueue time the job's hash holds (field ``e``, Redis' clock): this call's for a
    created job, the first call's for a replay, the guarded job's when deduplicated or
    replaced; 0 when the job has none. The backend dates its results with it, so a result
    returned by ``enqueue()`` and the one read back by ``get_result()`` agree (one clock).
    """

    enqueued_ms: int

    def __new__(cls, code: Any, enqueued_ms: Any) -> Self:
        self = super().__new__(cls, int(code))
        self.enqueued_ms = int(enqueued_ms or 0)
        return self

    def __repr__(self) -> str:
        return f"Enqueued({int(self)}, enqueued_ms={self.enqueued_ms})"


def _enqueued_pairs(raw: Sequence[Any]) -> list[Enqueued]:
    """Read an enqueue script's flat reply (code, enqueued ms per job)."""
    return [Enqueued(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]


@dataclass(frozen=True, slots=True)
class FlowJob:
    """One job of a flow for :meth:`Transitions.enqueue_flow`.

    ``parent_queue`` is ``""`` for the root; ``policy`` is what the parent does when this job
    fails (``""`` fail, ``"i"`` ignore, ``"r"`` remove the dependency); ``children`` lists
    ``(queue, id, name)`` of the job's direct children (empty for a leaf); ``keep_ms`` is how
    long the job is kept when a flow step fails or cancels it.
    """

    queue: str
    job: NewJob
    parent_queue: str = ""
    policy: str = ""
    keep_ms: int = 0
    children: tuple[tuple[str, str, str], ...] = ()


def _job_args(j: NewJob) -> list[Any]:
    return [j.id, j.data, j.priority, j.run_at_ms, j.delay_ms, j.correlation_id, j.parent_id]


_pack_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
#: The columns of enqueue.lua's packed jobs that one value may stand for (all jobs share it).
_SHARED_COLUMNS = tuple(
    (column, attrgetter(attr))
    for column, attr in (("p", "priority"), ("r", "run_at_ms"), ("y", "delay_ms"), ("c", "correlation_id"), ("a", "parent_id"))
)
_ID, _DATA = attrgetter("id"), attrgetter("data")


def _pack_jobs(jobs: Sequence[NewJob], lean: bool = False) -> str:
    """Return ``jobs`` as enqueue.lua's ARGV[3]: one JSON object of columns, decoded once in Lua.

    ``"i"`` ids and ``"d"`` payloads are lists; a column every job has the same value of (the
    jobs of one ``enqueue_many()`` call share their priority, due time, correlation and parent
    ids) is that one value. One string instead of 7 arguments per job: less to pack here and
    to parse in Redis (docs/performance.md, "Enqueue cost"). ``lean`` (``LEAN_JOB_HASH``) adds
    ``"l": 1``: the waiting jobs' hashes leave out ``p`` at 0 and ``ws``.
    """
    packed: dict[str, Any] = {"i": list(map(_ID, jobs)), "d": list(map(_DATA, jobs))}
    if lean:
        packed["l"] = 1
    for column, get in _SHARED_COLUMNS:
        values = list(map(get, jobs))  # (map of an attrgetter: half the time of a comprehension of getattr)
        value = values[0]
        packed[column] = value if values.count(value) == len(values) else values
    return _pack_encoder.encode(packed)


def _pack_columns(jobs: NewJobs, lean: bool = False) -> str:
    """Return ``jobs`` as enqueue.lua's ARGV[3]: :func:`_pack_jobs`' text, read from the columns as they are."""
    shared = jobs.shared
    packed: dict[str, Any] = {"i": jobs.ids, "d": jobs.data}
    if lean:
        packed["l"] = 1
    for column, get in _SHARED_COLUMNS:
        packed[column] = get(shared)
    return _pack_encoder.encode(packed)


def _pack_outcomes(outcomes: Sequence[Outcome]) -> str:
    """Return ``outcomes`` as settle_and_fetch.lua's ARGV[7]: one flat JSON list, 6 values per outcome.

    One string instead of 6 arguments per outcome, decoded once in Lua (as :func:`_pack_jobs`
    does for a bulk enqueue).
    """
    return _pack_encoder.encode([value for o in outcomes for value in (o.id, o.token, o.kind, o.value, o.delay_ms, o.keep_ms)])


class Transitions(ScriptRunner):
    """Every state change of a job: one script call each (bulk ones chunked and pipelined)."""

    # -- creating jobs --------------------------------------------------------------------

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Add jobs to ``queue`` in one call. Returns per job 1 waiting, 2 scheduled, 0 existed.

        Each code is an :class:`Enqueued`: its ``enqueued_ms`` is the job's stored enqueue time.
        """
        if not jobs:
            return []
        if len(jobs) == 1:
            return [self.enqueue_one(queue, jobs[0])]
        k = self.keys(queue)
        args = (k.job_prefix, self.maxlen, _pack_jobs(jobs, self._lean))
        return _enqueued_pairs(self._run("enqueue", (k.wait, k.scheduled, k.meta, k.events, k.marker), args))

    def enqueue_one(self, queue: str, job: NewJob) -> Enqueued:
        """Add one job to ``queue`` (``job.enqueue()``): :meth:`enqueue` of one job, its code alone.

        Its 7 arguments (cheaper to send than to pack), and "1" for ``LEAN_JOB_HASH`` (enqueue.lua).
        """
        head = self._enqueue_heads.get(queue)
        if head is None:
            k = self.keys(queue)
            head = self._enqueue_heads[queue] = ((k.wait, k.scheduled, k.meta, k.events, k.marker), k.job_prefix)
        keys, prefix = head
        # The job's arguments in the one order enqueue.lua and enqueue_guarded.lua read (_job_args).
        args = (prefix, self.maxlen, *_job_args(job), *((1,) if self._lean else ()))
        code, enqueued_ms = self._run("enqueue", keys, args)
        return Enqueued(code, enqueued_ms)

    def enqueue_many(self, queue: str, jobs: Sequence[NewJob], *, chunk: int = 500) -> list[Enqueued]:
        """Add many jobs in one round trip: one script call per ``chunk`` jobs, pipelined.

        Each call is short, so Redis serves other clients between chunks.
        """
        if len(jobs) <= chunk:
            return self.enqueue(queue, jobs)
        k = self.keys(queue)
        packs = [_pack_jobs(jobs[start : start + chunk], self._lean) for start in range(0, len(jobs), chunk)]
        return _enqueued_pairs(self._run_chunked(
            "enqueue", (k.wait, k.scheduled, k.meta, k.events, k.marker), (k.job_prefix, self.maxlen), packs, width=1, chunk=1
        ))

    def enqueue_columns(self, queue: str, chunks: Iterable[NewJobs]) -> list[int]:
        """Add the jobs of ``chunks`` (each one script call) to ``queue``; the enqueue time (ms) each job holds, in order.

        Each chunk is packed and sent as soon as ``chunks`` yields it, without waiting for the
        reply of the one before, so Redis writes a chunk while the caller makes the next
        (:meth:`~django_jobs.engine.runner.ScriptRunner._run_streamed`). ``chunks`` must not
        fail once it yielded: what it yielded may be written. Each job's ``enqueued_ms`` as
        :meth:`enqueue`'s :class:`Enqueued` has it, as a plain ``int`` (no object per job; the
        codes are not returned: new ids are created, 1 or 2, and a replayed id's reply is the
        time it holds either way).
        """
        k = self.keys(queue)
        head = (k.job_prefix, self.maxlen)
        calls = ((*head, _pack_columns(jobs, self._lean)) for jobs in chunks if jobs.ids)
        replies = self._run_streamed("enqueue", (k.wait, k.scheduled, k.meta, k.events, k.marker), calls)
        return [int(ms or 0) for ms in replies[1::2]]  # (a replay's is the hash's 'e', a string)

    def enqueue_guarded(self, queue: str, jobs: Sequence[tuple[NewJob, Guard]]) -> list[tuple[Enqueued, str]]:
        """Add jobs that carry a unique key and/or a limit key in one call; per job ``(code, job id)``.

        Codes (:class:`~django_jobs.engine.protocol.EnqueueCode`): 1 created waiting, 2 created
        scheduled, 0 id existed, 3 deduplicated, 4 replaced (the id is then the guarded job's;
        see enqueue_guarded.lua). Each code is an :class:`Enqueued` whose ``enqueued_ms`` is the
        stored enqueue time of the job the id names (the guarded job's for 3 and 4).
        """
        k = self.keys(queue)
        args: list[Any] = [k.job_prefix, self.maxlen, k.unique_prefix, k.limit_prefix]
        for j, u in jobs:
            args += [*_job_args(j), u.key, u.mode, u.until, u.window_ms,
                     u.limit_key, u.limit_concurrency, u.limit_rate, u.limit_period_ms]
        raw = self._run("enqueue_guarded", (k.wait, k.scheduled, k.meta, k.events, k.marker), args)
        return [(Enqueued(raw[i], raw[i + 2]), str(raw[i + 1])) for i in range(0, len(raw), 3)]

    def enqueue_flow(self, jobs: Sequence[FlowJob]) -> Enqueued:
        """Create a whole flow in one script call: 1 created, 0 a job of it existed (nothing written).

        The reply is an :class:`Enqueued`: ``enqueued_ms`` is the enqueue time every job of the
        flow holds (for 0: the stored one of the first job found existing, e.g. a replay's).
        All of it or nothing: on one Redis server (or Sentinel), or when the whole flow is on
        one queue. On a Redis Cluster a flow over several queues is written in parts, complete
        in effect (:meth:`django_jobs.engine.relay.Relay.enqueue_flow`).

        ``jobs`` lists parents before their children (as :meth:`django_jobs.flows.Flow.enqueue` does).
        """
        args: list[Any] = [self.maxlen]
        for j in jobs:
            args += self._flow_job_args(j)
        # The script names its keys in ARGV; the one key routes the call to the flow's slot on a cluster.
        code, enqueued_ms = self._run("flow_enqueue", (self.keys(jobs[0].queue).meta,), args)
        return Enqueued(code, enqueued_ms)

    def _flow_job_args(self, j: FlowJob) -> list[Any]:
        n = j.job
        return [
            self.keys(j.queue).base, n.id, n.data, n.priority, n.run_at_ms, n.delay_ms, n.correlation_id,
            n.parent_id, self.keys(j.parent_queue).base if j.parent_queue else "", j.policy, j.keep_ms,
            json.dumps([[self.keys(q).base, i, q, name] for q, i, name in j.children]) if j.children else "",
        ]

    # -- running jobs ---------------------------------------------------------------------

    def fetch(self, queue: str, count: int, *, lease_ms: int, worker_id: str, start_now: int | None = None) -> FetchResult:
        """Promote due jobs and claim up to ``count`` waiting jobs of ``queue``.

        ``start_now``: how many of them the caller can start at once (its free threads); a
        queue with a concurrency limit in force claims no more than that (see fetch.lua).
        """
        return _fetch_result(queue, self._run("fetch", *self._fetch_call(queue, count, lease_ms, worker_id, start_now)))

    def _fetch_call(
        self, queue: str, count: int, lease_ms: int, worker_id: str, start_now: int | None
    ) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        """The KEYS and ARGV of one ``fetch`` call (fetch.lua)."""
        k = self.keys(queue)
        return (
            (k.wait, k.scheduled, k.active, k.meta, k.events, k.marker, k.rate),
            (k.job_prefix, self.maxlen, *self._fetch_args(queue, count, lease_ms, worker_id, start_now)),
        )

    def _fetch_args(self, queue: str, count: int, lease_ms: int, worker_id: str, start_now: int | None) -> tuple[Any, ...]:
        """fetch.lua's ARGV from 3 on (settle_and_fetch.lua's from 8): what a claim asks for."""
        tail: tuple[Any, ...] = () if start_now is None else (max(0, start_now),)
        active = self._active_events.get(queue)  # asked once per queue: this runs on every fetch
        if active is None:
            active = self._active_events[queue] = self.settings.active_events(queue)
        if not active:  # ARGV[11] "1": no "active" events (fetch.lua)
            tail = ("" if start_now is None else max(0, start_now), 1)
        return (count, lease_ms, worker_id, PROMOTE_LIMIT, *self._default_limits(queue), *tail)

    @property
    def fetches_on_wake(self) -> bool:
        """Whether :meth:`fetch_on_wake` is available (one server; a cluster's marker waits run on their own threads)."""
        return not self._cluster

    def fetch_on_wake(
        self, queue: str, timeout: float, count: int, *, lease_ms: int, worker_id: str, start_now: int | None = None,
        blocked: Callable[[int | None], None] | None = None,
    ) -> FetchResult:
        """Block on ``queue``'s marker for up to ``timeout`` seconds, then :meth:`fetch`: one round trip.

        ``CLIENT ID``, the marker's ``BLPOP`` and the ``fetch`` call are sent together on one
        blocking connection. Redis runs a blocked client's next command as soon as the ``BLPOP``
        returns (a token, or its timeout), so the claimed jobs come back in the wake-up's own
        reply instead of one round trip later. The marker rule is unchanged: the token taken is
        followed by a fetch, as after :meth:`wait_for_work`.

        ``count`` and ``start_now`` are decided before the wait; the caller's free slots can only
        grow meanwhile. ``blocked(client_id)`` is called once the wait is sent (None when
        ``CLIENT ID`` is refused): :meth:`unblock` with that id ends the wait at once (the fetch
        still runs, and the caller hands back what it claimed). Not on a cluster
        (:attr:`fetches_on_wake`).
        """
        keys, args = self._fetch_call(queue, count, lease_ms, worker_id, start_now)
        raw = self._blocking_script("fetch", self.keys(queue).marker, timeout, keys, args, blocked)
        if raw is None:  # NOSCRIPT (cache flushed): the wait is over, fetch the usual way
            return self.fetch(queue, count, lease_ms=lease_ms, worker_id=worker_id, start_now=start_now)
        return _fetch_result(queue, raw)

    def claim(self, queue: str, job_id: str, *, lease_ms: int, worker_id: str) -> Claimed | None:
        """Claim job ``job_id`` now if it is waiting or scheduled (None otherwise).

        Raises:
            JobNotFound: no such job in ``queue``.
        """
        k = self.keys(queue)
        raw = self._run(
            "claim",
            (k.wait, k.scheduled, k.active, k.meta, k.events, k.job(job_id)),
            (job_id, self.maxlen, lease_ms, worker_id),
        )
        if isinstance(raw, int):
            raise_for_code(raw, job_id)
            return None
        token, data, attempt, enqueued, cid, parent = raw
        return Claimed(queue, job_id, str(token), data, int(attempt), int(enqueued or 0), cid, parent)

    def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[int]:
        """Apply outcomes of active jobs in one call; one code per outcome (see settle.lua)."""
        return list(self._run("settle", *self._settle_call(queue, outcomes)))

    def _settle_call(self, queue: str, outcomes: Sequence[Outcome]) -> tuple[tuple[str, ...], list[Any]]:
        """The KEYS and ARGV of one ``settle`` call (settle.lua)."""
        k = self.keys(queue)
        args: list[Any] = [k.job_prefix, self.maxlen, *self._keep_args(queue)]
        for o in outcomes:
            args += [o.id, o.token, o.kind, o.value, o.delay_ms, o.keep_ms]
        return (k.active, k.wait, k.scheduled, k.completed, k.failed, k.cancelled, k.meta, k.events, k.marker), args

    def _keep_args(self, queue: str) -> tuple[int, int, int, int]:
        """settle.lua's ARGV[3..6]: keep completed ms and count, keep failed ms and count."""
        c_age, c_count = self.settings.keep(queue, "COMPLETED")
        f_age, f_count = self.settings.keep(queue, "FAILED")
        return int(c_age * 1000), c_count, int(f_age * 1000), f_count

    def settle_and_fetch(
        self, queue: str, outcomes: Sequence[Outcome], count: int, *, lease_ms: int, worker_id: str,
        start_now: int | None = None,
    ) -> tuple[list[int] | Exception, FetchResult]:
        """:meth:`settle` ``outcomes`` of ``queue``, then :meth:`fetch` from it: one script call.

        ``settle_and_fetch.lua`` runs the settle's batch and then the fetch's
        (``includes/settle_batch`` and ``includes/fetch_batch``, the bodies ``settle.lua`` and
        ``fetch.lua`` run), so a retry the settle puts back to waiting can be claimed by the fetch
        after it (the caller reads the settle's codes before it looks at the claimed jobs). The
        outcomes go packed in one string (:func:`_pack_outcomes`). An error of the call raises
        (nothing claimed is returned then); the settle may have been applied (settling again is
        replay-safe). The return type keeps room for a settle's own error: a sharded queue's
        settle, sent apart (:meth:`django_jobs.engine.shards.Sharding.settle_and_fetch`).
        """
        k = self.keys(queue)
        settled, fetched = self._run(
            "settle_and_fetch",
            (k.active, k.wait, k.scheduled, k.completed, k.failed, k.cancelled, k.meta, k.events, k.marker, k.rate),
            (k.job_prefix, self.maxlen, *self._keep_args(queue), _pack_outcomes(outcomes),
             *self._fetch_args(queue, count, lease_ms, worker_id, start_now)),
        )
        return list(settled), _fetch_result(queue, fetched)

    def renew(self, queue: str, leases: Iterable[tuple[str, str]], *, lease_ms: int) -> tuple[list[str], list[str]]:
        """Extend leases; return (lost job ids, job ids with a cancel request)."""
        k = self.keys(queue)
        args: list[Any] = [k.job_prefix, lease_ms]
        for job_id, token in leases:
            args += [job_id, token]
        lost, cancel = self._run("renew", (k.active,), args)
        return list(lost), list(cancel)

    def set_progress(self, queue: str, job_id: str, token: str, progress_json: str) -> int:
        """Record the progress of a running job (fenced by its lease token): 1, or -1 / -3 (see progress.lua)."""
        k = self.keys(queue)
        return int(self._run("progress", (k.job(job_id), k.events), (job_id, token, progress_json, self.maxlen)))

    def recover(self, queue: str, *, now_ms: int = 0, limit: int = RECOVER_LIMIT) -> Recovery:
        """Return expired leases to waiting; returns (recovered, failed as worker_lost).

        The result's ``jobs`` lists ``(job_id, what, correlation_id)`` for each job handled,
        ``what`` being ``"stalled"`` (back to waiting), ``"failed"`` or ``"cancelled"`` (a cancel
        was requested).
        """
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        recovered, failed, _cancelled, flat = self._run(
            "recover",
            (k.active, k.wait, k.failed, k.meta, k.events, k.marker, k.cancelled, k.scheduled),
            (k.job_prefix, self.maxlen, self.settings.max_recoveries, limit, int(f_age * 1000), now_ms),
        )
        return Recovery(int(recovered), int(failed), list(zip(flat[::3], flat[1::3], flat[2::3])))

    def release(self, queue: str, leases: Iterable[tuple[str, str]]) -> int:
        """Put unfinished active jobs back to waiting (shutdown); returns how many."""
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        args: list[Any] = [k.job_prefix, self.maxlen, int(f_age * 1000)]
        for job_id, token in leases:
            args += [job_id, token]
        return int(self._run("release", (k.active, k.wait, k.meta, k.events, k.marker, k.cancelled, k.scheduled), args))

    # -- operator actions (one job or many) -----------------------------------------------

    def cancel(self, queue: str, job_id: str) -> int:
        """Cancel a job: 1 cancelled, 2 cancel requested (running), 0 finished, -1 unknown."""
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        return int(
            self._run(
                "cancel",
                (k.wait, k.scheduled, k.cancelled, k.events, k.job(job_id)),
                (job_id, self.maxlen, int(f_age * 1000)),
            )
        )

    def cancel_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Cancel many jobs of ``queue``; one code per id, as :meth:`cancel` (see cancel_many.lua)."""
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        return self._bulk(
            "cancel_many", (k.wait, k.scheduled, k.cancelled, k.events), (k.job_prefix, self.maxlen, int(f_age * 1000)), job_ids
        )

    def retry(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Move failed or cancelled jobs back to waiting with their attempts reset.

        One code per id (``engine.protocol.RetryCode``): 1 retried, 0 not failed or cancelled,
        -1 unknown, 2 not retried because another job now guards its unique key, 3 not retried:
        a flow parent that failed through a child not retried in the same call (see retry.lua,
        docs/flows.md#retrying). A retried job with a unique key takes the key back.
        """
        return self.retry_many(queue, job_ids)

    def retry_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Like :meth:`retry`, for any number of ids: one script call per 1,000, pipelined."""
        k = self.keys(queue)
        return self._bulk("retry", (k.wait, k.failed, k.cancelled, k.meta, k.events, k.marker), (k.job_prefix, self.maxlen), job_ids)

    def delete_jobs(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Delete jobs of ``queue`` that are not running; one code per id (see delete.lua).

        1 deleted, 0 not deleted (running, or an unfinished child of a flow: cancel it first),
        -1 unknown. Deleting a flow parent that waits for its children cancels them first.
        """
        k = self.keys(queue)
        return self._bulk(
            "delete", (k.wait, k.scheduled, k.completed, k.failed, k.cancelled, k.events, k.waiting_children),
            (k.job_prefix, self.maxlen), job_ids,
        )

    #: States ``purge`` may delete.
    PURGEABLE = ("completed", "failed", "cancelled")

    def purge(self, queue: str, state: str, *, limit: int = 500) -> int:
        """Delete up to ``limit`` jobs of ``queue`` in ``state`` (completed, failed or cancelled).

        Returns how many were deleted; call again until it returns 0.
        """
        if state not in self.PURGEABLE:
            raise ValueError(f"Only finished jobs can be purged ({', '.join(self.PURGEABLE)}), not {state!r}.")
        k = self.keys(queue)
        return int(self._run("purge", (k.state_set(state),), (k.job_prefix, limit)))


def _fetch_result(queue: str, raw: Any) -> FetchResult:
    """Read a ``fetch`` reply (fetch.lua)."""
    jobs = [
        Claimed(queue, raw[i], str(raw[i + 1]), raw[i + 2], int(raw[i + 3]), int(raw[i + 4] or 0), raw[i + 5], raw[i + 6])
        for i in range(2, len(raw), 7)
    ]
    return FetchResult(jobs, int(raw[0]), raw[1] == 1, raw[1] == 2)
