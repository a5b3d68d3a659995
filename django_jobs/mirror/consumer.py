"""The mirror's consumer: follow each queue's events stream and write the changed jobs' rows."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router, transaction

from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.keys import MIRROR_GROUP, base_queue
from django_jobs.engine.streams import MirrorGroupMissing, MirrorLag, entry_job_ids, stream_id_key
from django_jobs.exceptions import ConfigurationError
from django_jobs.lifeline import libc
from django_jobs.mirror.maintenance import prune, resync_queue
from django_jobs.mirror.rows import (
    _advance_cursor,
    _model,
    _upsert_safely,
    _write_gone,
    forget_memos,
    row_from_hash,
    stored_versions,
    upsert_arrays,
    version_of,
)

logger = logging.getLogger("django_jobs.mirror")

#: Events after which a job never changes again.
FINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})
#: The event of a job deleted through the engine (``delete.lua``): its row is deleted too.
DELETED_EVENT = "deleted"
#: The events that store a new job (``job_store.lua``): a job whose first event in a batch is one
#: of them is not looked up in the database before its hash is read (it rarely has a row yet).
CREATED_EVENTS = frozenset({"waiting", "scheduled", "waiting_children"})
#: Longest wait for new events before the loop looks around (stop flag, prune), seconds.
IDLE_WAIT = 1.0
#: The default of ``MIRROR["LINGER"]``: after a round of reads that brought fewer than ``BATCH``
#: entries per queue, and after an idle wait that new events ended, wait this long (seconds)
#: for more events before the next read: a short job's waiting, active and completed events then
#: land in one batch and the job is written once, not two or three times, and each transaction
#: writes more rows (its lag grows by at most this much).
LINGER = 0.1
#: The largest share of one CPU core the mirror loop uses: after a batch that took ``c``
#: seconds of CPU it rests ``c * (1 / share - 1)``. When jobs saturate the CPU, the workers
#: keep the rest and the mirror falls behind, catching up once the burst is over. At 1,000
#: jobs/s the mirror needs 0.1 to 0.3 of a core on the benchmark VM: 0.25 cost the lag target
#: there (p50 1.6 s), 0.5 keeps it (bench --mirror, docs/mirror.md#lag-and-cost).
MAX_CPU_SHARE = 0.5
#: The same cap while the mirror is behind (a read came back full): none. The mirror is niced
#: (``MIRROR["NICE"]``), so when the workers want the CPU they have it; what idle CPU a burst
#: leaves goes to catching up, which at half a core ran slower than the drain (issue 18:
#: bench/mirror_burst.py, docs/performance.md#mirror-burst).
CATCH_UP_CPU_SHARE = 1.0
#: While a queue's reads come back full (the mirror is behind), each next read asks for twice as
#: many events, up to this many times ``BATCH`` (at most 10,000): a catching-up mirror makes
#: fewer round trips per event, most of which it skips (their job's row is already newer).
CATCH_UP_FACTOR = 8
#: At most this many jobs (or ``BATCH``, if larger) per snapshot and transaction, however many
#: events a read brought: a catching-up mirror holds one such chunk's hashes and rows (and the
#: chunk in flight) at a time, not a whole read's (up to ``CATCH_UP_FACTOR`` x ``BATCH``). Issue 17:
#: chunks of 4,000 jobs left the mirror process at 45-80 MB (PSS) after a burst it fell behind in.
TRANSACTION_JOBS = 1_000
#: After this many rows written since it last did, the mirror gives the C heap's free pages back to
#: the system (:func:`release_memory`) once it is not behind, or after ten times as many while it is.
RELEASE_AFTER = 2_000
#: Jobs whose last written version a mirror remembers, to skip events its rows already include.
WRITTEN_CACHE = 100_000
#: Of which a mirror keeps the newest this many once caught up after a burst (:meth:`Mirror._compact`).
WRITTEN_KEPT = 10_000
#: While a queue's reads come back full (the mirror is behind), a job whose events in a batch
#: only created it and whose hash says it still waits is not written yet: its entry stays
#: unacknowledged and the row is written with the job's next event (it started: one write
#: instead of a ``waiting`` row rewritten moments later), or when a read of the queue finds no
#: new events (nothing moves in it: its workers are idle, or it is paused), or once the mirror
#: caught up with the queue while its oldest deferred entry is more than :data:`DEFER_FOR`
#: seconds old. At most this many jobs are deferred over all queues (each costs the mirror
#: about 100 bytes: a dict entry, job id -> the entry naming it); past it, a batch's newest
#: waiting jobs are written at once (the oldest deferred start first: they are the ones whose
#: next event comes soonest). In a burst whose backlog the workers drain, most jobs' ``waiting``
#: row is never written: a 1,000,000-job bulk enqueue outruns the drain by up to ~900,000 jobs.
DEFER_MAX = 1_000_000
#: Seconds (stream time) after which a caught-up mirror writes a queue's deferred jobs even while
#: events still come (a backlog drained slowly): a waiting job is not kept out of the admin longer.
DEFER_FOR = 300.0


def _by_jobs(
    entries: Sequence[tuple[str, dict[str, str]]], named: Sequence[list[str]], limit: int
) -> Iterable[tuple[Sequence[tuple[str, dict[str, str]]], Sequence[list[str]]]]:
    """Split ``entries`` (and ``named``, each entry's job ids) in order into runs naming at most
    ``limit`` jobs (an entry is never split)."""
    start, jobs = 0, 0
    for i, ids in enumerate(named):
        if jobs and jobs + len(ids) > limit:
            yield entries[start:i], named[start:i]
            start, jobs = i, 0
        jobs += len(ids)
    if start < len(entries):
        yield entries[start:], named[start:]


def release_memory() -> bool:
    """Return the C heap's free memory to the system (glibc's ``malloc_trim(0)``); False where unavailable.

    Python keeps what a batch's hashes and rows freed in its heap, where the next batch reuses it;
    after a burst that memory is held for nothing (a mirror's RSS stayed at ~100 MB). Costs
    about a millisecond per 100 MB of heap, so the mirror calls it only after
    :data:`RELEASE_AFTER` rows.
    """
    trim = getattr(libc(), "malloc_trim", None)
    if trim is None:  # not glibc (musl, macOS): nothing to do
        return False
    trim(0)
    return True


def commits_overlap(using: str) -> bool:
    """Whether the mirror commits a batch on a writer thread while it prepares the next (database ``using``).

    Yes on a database that serves concurrent readers and a writer well (PostgreSQL, MySQL, ...):
    the mirror process's share of a row (Redis snapshot read, decoding, building the rows) then
    runs while the database commits the batch before (issue 18, docs/mirror.md#overlapped-commits).
    Not on SQLite (a second connection risks "database is locked"; the sequential mirror already
    catches up faster than the workers drain there), and not inside a transaction of the caller's
    (the rows are written in it, on the caller's connection, as before).

    >>> commits_overlap("default")  # doctest: +SKIP
    True
    """
    conn = connections[using]
    return conn.vendor != "sqlite" and not conn.in_atomic_block


def _close_connection(using: str) -> None:
    """Close the calling thread's connection to database ``using`` (Django's connections are per thread)."""
    connections[using].close()


@dataclass(slots=True)
class _Batch:
    """A prepared batch of one queue: what its transaction writes and what is acknowledged after it."""

    queue: str
    rows: list[dict[str, Any]]
    gone: dict[str, tuple[str, str]]  #: finished jobs whose hash is gone -> (entry id, final event)
    dropped: list[str]  #: jobs deleted through the engine: their rows go too
    newest: str  #: the cursor's new position ("" : not moved)
    acks: list[str]
    recorded: list[tuple[str, str]]  #: finished jobs recorded (job id, finish ms): deletable by retention
    transact: bool  #: False: nothing to write, only acknowledgements (after the commit before it)
    arrays: list[str] | None = None  #: PostgreSQL: the upsert's parameters, built while preparing (rows.upsert_arrays)
    lost: list[str] = field(default_factory=list)  #: set by the commit

    @property
    def count(self) -> int:
        """The rows this batch writes (deleted ones included); 0 without a transaction."""
        return len(self.rows) + len(self.gone) + len(self.dropped) if self.transact else 0


class Mirror:
    """Follow the events of ``queues`` (default: every configured queue) and write rows.

    :meth:`step` handles one batch per queue; :meth:`run` loops until told to stop, waiting
    for new events without polling, retrying with backoff while Redis or the database is
    down, and pruning old rows every ``MIRROR["PRUNE_INTERVAL"]`` seconds.

    ``consumer`` names this reader in the consumer group; it defaults to the host name, so a
    mirror restarted on the same host re-reads what it left unacknowledged at once (others'
    leftovers are taken over after ``MIRROR["CLAIM_AFTER"]`` seconds).
    """

    def __init__(self, queues: Iterable[str] | None = None, *, consumer: str = "", using: str | None = None) -> None:
        settings = get_settings()
        self.queues = list(queues) if queues else settings.queue_names
        unknown = [q for q in self.queues if q not in settings.queues]
        if unknown:
            raise ConfigurationError(
                f"Unknown queue(s) {', '.join(map(repr, unknown))}. Configured: {', '.join(settings.queue_names)}."
            )
        # A sharded queue has an events stream per shard: each is followed on its own.
        self.queues = [shard for queue in self.queues for shard in get_engine().shards(queue)]
        self.batch = int(settings.mirror["BATCH"])
        self.catch_up = max(self.batch, min(10_000, self.batch * CATCH_UP_FACTOR))
        #: Jobs per snapshot and transaction (TRANSACTION_JOBS): a read of catch_up events is applied in such chunks.
        self.chunk = min(self.catch_up, max(self.batch, TRANSACTION_JOBS))
        self._unreleased = 0  #: rows written since the C heap was last trimmed (release_memory)
        self._burst = False  #: a step was behind since the C heap was last trimmed
        self.releases = 0  #: times the C heap was trimmed
        self._counts: dict[str, int] = {}  # the next read's size per queue
        self.claim_after = float(settings.mirror["CLAIM_AFTER"])
        self.prune_interval = float(settings.mirror["PRUNE_INTERVAL"])
        self.linger = float(settings.mirror["LINGER"])
        self.max_cpu_share = MAX_CPU_SHARE
        self.consumer = consumer or f"mirror@{socket.gethostname()}"
        self.using = using or router.db_for_write(_model())
        self.resyncs = 0  #: queues resynced because events were trimmed before they were read
        #: MAX_LAG and HOLD: what :meth:`run` asks Redis to keep for it (lua/includes/mirror.lua).
        self.max_lag = int(settings.mirror["MAX_LAG"])
        self.hold_ms = int(float(settings.mirror["HOLD"]) * 1000)
        #: The deployment's one mirror is elected (:meth:`run`): a lease like the cron leader's.
        self.lease_ms = int(settings.leader_lease_seconds * 1000)
        self.holder = f"{self.consumer}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.token = ""  #: the mirror lease ("<epoch>|<holder>") while this mirror leads
        self._renew_at = 0.0
        self._standby_logged = False
        self.lost = 0  #: finished jobs whose hash was gone before this mirror recorded them
        self._ready: set[str] = set()
        self._resync: set[str] = set()
        self._tips: dict[str, str] = {}
        self._claim_at = 0.0
        self._read = 0
        self._behind = False  #: a read of the last step came back full
        #: job id -> version of the snapshot this mirror last committed for it (most recent last).
        self._written: OrderedDict[str, int] = OrderedDict()
        self.skipped = 0  #: events skipped because a row already written includes them
        self.stored_skips = 0  #: of which known from the database (not this mirror's memory)
        self.deferred = 0  #: waiting jobs whose row was deferred for their next event (DEFER_MAX)
        self.defer_max = DEFER_MAX
        self.defer_for = DEFER_FOR
        #: Per queue: the deferred jobs (oldest first) -> the entries naming them, each entry's
        #: count of deferred jobs (acknowledged when it falls to 0), the queues whose last read
        #: came back full, and the id after which this consumer's own pending entries are unknown
        #: to it (the deferred ones are older; a failed batch is newer).
        #: A job named by one entry (nearly all) maps to its id, one named by several to a tuple of them.
        self._deferred: dict[str, dict[str, str | tuple[str, ...]]] = {}
        self._defer_counts: dict[str, dict[str, int]] = {}
        self._full: set[str] = set()
        self._pending_after: dict[str, str] = {}
        #: The queues where this consumer has no pending entries but the deferred ones: the last
        #: read of its pending ones found none, and every step since succeeded (each entry it read
        #: is acknowledged or deferred). Their pending entries are not read again until a claim.
        self._no_pending: set[str] = set()
        #: Overlapped commits (:func:`commits_overlap`): the writer thread, the batch it commits
        #: (acknowledged when it lands), and how many batches it was given.
        self._overlap = False
        self._writer: ThreadPoolExecutor | None = None
        self._flight: tuple[_Batch, Future[None]] | None = None
        self.overlapped = 0  #: batches committed by the writer thread while this thread prepared the next

    def _ensure(self, queue: str) -> None:
        if queue not in self._ready:
            get_engine().mirror_ensure_group(queue, MIRROR_GROUP)
            self._ready.add(queue)

    def step(self) -> int:
        """Handle one batch of events per queue; return the number of rows written.

        Unacknowledged entries come first (this consumer's own, then, every
        ``CLAIM_AFTER`` / 2 seconds, those other consumers left for ``CLAIM_AFTER``). When it
        returns, every row it wrote is committed and its entries are acknowledged.
        """
        return self._settled(self._step)

    def _settled(self, work: Callable[[], int]) -> int:
        """Run ``work`` (steps), its commits overlapped where they can be; return once every commit landed.

        The writer thread (and its database connection) ends with it: :meth:`step`,
        :meth:`drain` and :func:`mirror_once` leave nothing running behind them.
        """
        self._overlap = commits_overlap(self.using)
        try:
            written = work()
            self._land()
            return written
        except BaseException:
            self._land_quietly()
            raise
        finally:
            self._close_writer()

    def _step(self) -> int:
        written = 0
        self._read = 0
        self._behind = False
        claim = time.monotonic() >= self._claim_at
        claim_ms = int(self.claim_after * 1000)
        if self._claim_at == 0.0 and self.token:
            claim_ms = 1  # just elected: what the last leader left unacknowledged is ours now
        if claim:
            self._claim_at = time.monotonic() + self.claim_after / 2
        for queue in self.queues:
            written += self._step_queue(queue, claim_ms if claim else 0)
        return written

    def _step_queue(self, queue: str, claim_ms: int) -> int:
        try:
            return self._step_queue_once(queue, claim_ms)
        except BaseException:
            # Unacknowledged entries of this batch are read again, whatever their id (a read
            # whose reply was lost included: the next step reads this consumer's pending ones).
            self._pending_after.pop(queue, None)
            self._no_pending.discard(queue)
            raise

    def _step_queue_once(self, queue: str, claim_ms: int) -> int:
        engine = get_engine()
        self._ensure(queue)
        gap = False
        counts = self._defer_counts.setdefault(queue, {})
        full = fresh = False
        entries: list[tuple[str, dict[str, str]]] = []
        try:
            # This consumer's own unacknowledged entries (other than the deferred) can exist only
            # after a failed step (which forgets _pending_after and _no_pending), a restart or a
            # new term (nothing known yet): then, and when claiming, they are read first;
            # otherwise that read is skipped (a Redis call per queue and batch). Entries deferred
            # (DEFER_MAX) are pending on purpose: skipped (they are older than _pending_after).
            if claim_ms > 0 or queue not in self._no_pending:
                entries, trimmed = engine.mirror_pending(queue, MIRROR_GROUP, self.consumer, count=self.batch, claim_idle_ms=claim_ms,
                                                         after=self._pending_after.get(queue, "0"), known=counts)
                gap = trimmed > 0
                if entries or gap:
                    self._no_pending.discard(queue)  # there may be more: read them next step too
                else:
                    self._no_pending.add(queue)
            if not entries:
                count = self._counts.get(queue, self.batch)
                read = engine.mirror_read(queue, MIRROR_GROUP, self.consumer, count=count)
                self._tips[queue] = read.tip
                entries, gap = read.entries, gap or read.gap
                full = len(entries) >= count
                self._counts[queue] = min(count * 2, self.catch_up) if full else self.batch
                self._behind = self._behind or full
                fresh = True
        except MirrorGroupMissing:
            # Redis lost the stream (restart without persistence, FLUSHALL): start over.
            logger.warning("Mirror: the events stream of %r has no mirror group; creating it and resyncing", queue)
            self._ready.discard(queue)
            self._ensure(queue)
            entries, gap = [], True
            # What it deferred went with the stream; the resync writes every job Redis has.
            self._deferred.pop(queue, None)
            counts.clear()
            self._pending_after.pop(queue, None)
            self._no_pending.discard(queue)
        # Each entry's job ids, decoded once (a batch entry's ``js`` is a JSON list).
        named = [entry_job_ids(fields) for _, fields in entries]
        if fresh:
            # Counts are of entries, and a batch entry names several jobs (lua/includes/emit.lua):
            # the next read asks for about catch_up jobs.
            jobs = sum(map(len, named))
            if jobs > self.catch_up:
                self._counts[queue] = max(1, len(entries) * self.catch_up // jobs)
        written = 0
        if gap:
            logger.error(
                "Mirror: events of queue %r were trimmed before the mirror read them (it was more than "
                "MIRROR['MAX_LAG'] events behind, or away longer than MIRROR['HOLD']); resyncing it: jobs "
                "deleted meanwhile have no row", queue, extra={"action": "mirror_gap"},
            )
            self.resyncs += 1
            # Remembered until the resync succeeds: the read that saw the gap moved the group
            # past it, so a resync that fails (database down) must be retried from here.
            self._resync.add(queue)
        if queue in self._resync:
            self._land()  # the resync writes on this thread: after the commit in flight
            written += resync_queue(queue, using=self.using, batch=self.batch)
            self._resync.discard(queue)
        self._read += len(entries)
        if full:
            self._full.add(queue)
        else:
            self._full.discard(queue)
        # At most about self.chunk jobs per snapshot and transaction (batch entries name many
        # jobs each): the mirror holds one chunk's hashes and rows at a time, not the read's.
        for part, part_named in _by_jobs(entries, named, self.chunk):
            written += self._send(self._prepare(queue, part, job_ids=part_named))
            # Every entry up to here is acknowledged, deferred on purpose, or in the commit in
            # flight (acknowledged when it lands; if it fails, _forget drops this mark too).
            newest = max((entry_id for entry_id, _ in part), key=stream_id_key)
            if stream_id_key(newest) > stream_id_key(self._pending_after.get(queue, "0-0")):
                self._pending_after[queue] = newest
        deferred = self._deferred.get(queue)
        if deferred and not gap and (not entries or (not full and self._deferred_for(queue) > self.defer_for)):
            # The queue's events stopped (a read found nothing new: its workers are idle, or it
            # is paused), or it has kept jobs back for long: write its deferred jobs. Not at a
            # read that is merely short: while the workers still drain the backlog, the deferred
            # jobs start soon and are written then, once (a 1,000,000-job burst on SQLite wrote
            # 400,000 waiting rows twice otherwise).
            flush = list(deferred)
            for start in range(0, len(flush), self.chunk):
                written += self._send(self._prepare(queue, [], force=flush[start : start + self.chunk]))
        return written

    def _deferred_for(self, queue: str) -> float:
        """Seconds from ``queue``'s first deferred entry to its stream's newest event (stream time; 0: none).

        The first deferred is the oldest but for entries claimed from another consumer: close enough for a time bound.
        """
        counts = self._defer_counts.get(queue)
        tip = self._tips.get(queue)
        if not counts or not tip:
            return 0.0
        return max(0.0, (stream_id_key(tip)[0] - stream_id_key(next(iter(counts)))[0]) / 1000)

    def _prepare(
        self, queue: str, entries: Sequence[tuple[str, dict[str, str]]], *, force: Sequence[str] = (),
        job_ids: Sequence[list[str]] | None = None,
    ) -> _Batch:
        """Read what ``entries`` (stream entries of ``queue``) and ``force`` need written and build the batch: rows, acks, records.

        While the queue is behind, waiting jobs only created by these entries are deferred
        (:data:`DEFER_MAX`): their entries are acknowledged once the jobs' rows are written.
        ``force``: deferred jobs to write now. ``job_ids``: each entry's job ids
        (:func:`~django_jobs.engine.streams.entry_job_ids`), when the caller decoded them already.
        :meth:`_send` commits the batch and acknowledges its entries.

        What the batch's commit will change in this mirror's memory (deferred jobs, versions
        written) is applied here, before the commit: the next batch is prepared with it while
        this one commits. A commit that fails makes the mirror forget it all (:meth:`_forget`).
        """
        engine = get_engine()
        if job_ids is None:
            job_ids = [entry_job_ids(fields) for _, fields in entries]
        jobs: dict[str, int] = {job_id: 0 for job_id in force}  # job id -> version of its newest event in the batch not yet written
        firsts: dict[str, str] = dict.fromkeys(force, "")  # job id -> its first such event
        final: dict[str, tuple[str, str]] = {}
        written = self._written
        deferred = self._deferred.setdefault(queue, {})
        counts = self._defer_counts.setdefault(queue, {})
        for (entry_id, fields), entry_jobs in zip(entries, job_ids, strict=True):
            event = fields.get("e") or ""
            event_version = version_of(entry_id)
            # One job (j), or a batch entry naming several (js, lua/includes/emit.lua): the
            # entry is acknowledged once, after the rows of all its jobs are committed. An entry
            # naming no job is not one of ours: acknowledged, ignored.
            for job_id in entry_jobs:
                seen = written.get(job_id)
                if seen is not None and event_version <= seen:
                    # A snapshot this mirror wrote already holds this event's effect (common when
                    # catching up: the first event's read finds the job finished).
                    self.skipped += 1
                    continue
                if job_id not in jobs:
                    firsts[job_id] = event
                jobs[job_id] = max(event_version, jobs.get(job_id, 0))
                if event in FINAL_EVENTS or event == DELETED_EVENT:
                    final[job_id] = (entry_id, event)
        named = list(jobs)  # what this batch resolves: deferred jobs among them release their entries
        recorded: list[tuple[str, str]] = []
        # Not asked either: the jobs this mirror deferred. Their row was not written when their
        # hash said waiting, so a stored row as new as their next events is rare (another
        # writer's): it would only be written again, version-checked. In a saturated drain
        # that follows a burst, nearly every job of a batch was deferred: a query a batch saved.
        self._skip_stored(jobs, final, recorded,
                          [job_id for job_id in jobs if firsts[job_id] not in CREATED_EVENTS and job_id not in deferred])
        ids = list(jobs)
        lean = 0
        behind = queue in self._full and not force
        if behind:
            # Behind: a job these entries only created and that still waits gets its row with its
            # next event (or when the queue catches up): its entries wait for it (DEFER_MAX). The
            # snapshot reads only the state of such candidates (asked first) that still wait.
            candidates = [job_id for job_id in ids if firsts[job_id] in CREATED_EVENTS and job_id not in written
                          and job_id not in deferred]
            # At most DEFER_MAX over all queues: past it, the newest are written now (waiting).
            # And the entries kept back stay well inside MAX_LAG (Redis' cap on the stream would
            # trim them: a gap, then a resync).
            room = self.defer_max - sum(len(jobs) for jobs in self._deferred.values())
            if len(counts) >= self.max_lag // 2:
                room = 0
            del candidates[max(0, room):]
            if candidates:
                chosen = set(candidates)
                ids = candidates + [job_id for job_id in ids if job_id not in chosen]
                lean = len(candidates)
        tip, hashes = engine.mirror_snapshot(queue, ids, lean=lean) if ids else ("0-0", [])
        version = version_of(tip)
        new_deferred: dict[str, list[str]] = {}  # deferred by this batch (registered below)
        new_counts: dict[str, int] = {}
        if behind:
            # Exactly the lean replies: every waiting candidate is deferred, no row is built from one.
            later = {ids[i] for i in range(lean) if hashes[i].get("s") == "waiting"}
            if later:
                for (entry_id, _fields), entry_jobs in zip(entries, job_ids, strict=True):
                    these = [job_id for job_id in entry_jobs if job_id in later]
                    if these:
                        new_counts[entry_id] = new_counts.get(entry_id, 0) + len(these)
                        for job_id in these:
                            new_deferred.setdefault(job_id, []).append(entry_id)
                keep = [i for i in range(len(ids)) if ids[i] not in later]
                ids, hashes = [ids[i] for i in keep], [hashes[i] for i in keep]
                named = [job_id for job_id in named if job_id not in later]
        base = base_queue(queue)
        rows = [row_from_hash(base, job_id, data, version, texts=True) for job_id, data in zip(ids, hashes) if data]
        gone = {job_id: final[job_id] for job_id, data in zip(ids, hashes) if not data and job_id in final}
        # Deleted through the engine (the admin's delete): the row goes too.
        dropped = [job_id for job_id, (_entry, event) in gone.items() if event == DELETED_EVENT]
        for job_id in dropped:
            del gone[job_id]
        # Acknowledged after the commit: the entries none of whose jobs is deferred, and those
        # whose last deferred job this batch writes (or finds gone, or skips as stored).
        acks = [entry_id for entry_id, _ in entries if entry_id not in counts and entry_id not in new_counts]
        released = [job_id for job_id in named if job_id in deferred] if deferred else []
        freed: dict[str, int] = {}
        for job_id in released:
            named_by = deferred[job_id]
            for entry_id in (named_by,) if isinstance(named_by, str) else named_by:
                freed[entry_id] = freed.get(entry_id, 0) + 1
        acks += [entry_id for entry_id, n in freed.items() if counts[entry_id] == n]

        # What this batch writes no longer keeps its entries back (applied now, see above).
        for job_id in released:
            del deferred[job_id]
        for entry_id, n in freed.items():
            counts[entry_id] -= n
            if not counts[entry_id]:
                del counts[entry_id]
        for entry_id, n in new_counts.items():
            counts[entry_id] = counts.get(entry_id, 0) + n
        for job_id, entry_ids in new_deferred.items():  # none of them was deferred (candidates)
            deferred[job_id] = entry_ids[0] if len(entry_ids) == 1 else tuple(entry_ids)
        self.deferred += len(new_deferred)
        newest = max((entry_id for entry_id, _ in entries), key=stream_id_key) if entries else ""
        # Catching up, every event older than a row already written (or deferred): no
        # transaction (a commit each, an fsync on PostgreSQL) just to move the cursor, which the
        # next write or the last, partial batch moves. Its acknowledgement still waits for the
        # commit in flight (the rows its skipped events rely on may be in it).
        transact = bool(rows or gone or dropped) or (0 < len(entries) < self.batch)
        for row in rows:
            written[row["job_id"]] = version
            written.move_to_end(row["job_id"])
        while len(written) > WRITTEN_CACHE:
            written.popitem(last=False)
        # The finished jobs recorded become deletable by retention once acknowledged (lua/mirror_done.lua).
        recorded += [(job_id, data["f"]) for job_id, data in zip(ids, hashes)
                     if data.get("s") in FINAL_EVENTS and data.get("f")]
        # The upsert's parameters too (PostgreSQL): built here, the writer thread only sends them.
        arrays = upsert_arrays(rows, using=self.using) if self._overlap else None
        return _Batch(queue, rows, gone, dropped, newest if transact else "", acks, recorded, transact, arrays)

    def _commit(self, batch: _Batch) -> None:
        """Write ``batch`` in one transaction (rows, gone jobs, deleted ones, the cursor; the tallies with them)."""
        with transaction.atomic(using=self.using):
            _upsert_safely(batch.rows, using=self.using, arrays=batch.arrays)
            batch.lost = _write_gone(base_queue(batch.queue), batch.gone, using=self.using)
            if batch.dropped:
                _model().objects.using(self.using).filter(job_id__in=batch.dropped).delete()
            if batch.newest:
                _advance_cursor(batch.queue, batch.newest, using=self.using)

    def _commit_in_writer(self, batch: _Batch) -> None:
        """:meth:`_commit` on the writer thread: a failure closes its connection (the next batch opens a new one)."""
        try:
            self._commit(batch)
        except BaseException:
            connections[self.using].close()
            raise

    def _finish(self, batch: _Batch) -> None:
        """After ``batch``'s commit: count the jobs lost, then acknowledge its entries (on this thread)."""
        engine = get_engine()
        if batch.lost:
            self.lost += len(batch.lost)
            engine.mirror_count_lost(batch.queue, len(batch.lost))
            logger.error(
                "Mirror: %d finished job(s) of queue %r left Redis before the mirror recorded them (more than "
                "MIRROR['MAX_LAG'] behind, away longer than MIRROR['HOLD'], or purged); their rows hold only the "
                "final state", len(batch.lost), batch.queue, extra={"action": "mirror_lost"},
            )
        # Only now: a crash before this line leaves the entries pending, to be read again. The
        # finished jobs just recorded become deletable by retention (lua/mirror_done.lua).
        engine.mirror_done(batch.queue, MIRROR_GROUP, batch.acks, batch.recorded)

    def _send(self, batch: _Batch) -> int:
        """Commit ``batch`` after the one in flight; return its row count.

        Where commits overlap (:func:`commits_overlap`) the writer thread commits it while this
        thread prepares the next batch: it is acknowledged when the next is sent, or by
        :meth:`_land`. Otherwise it is committed and acknowledged here.
        """
        try:
            self._land()  # the commit in flight first: commits and acknowledgements in batch order
            if batch.transact and self._overlap:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="djj-mirror-writer")
                self._flight = (batch, self._writer.submit(self._commit_in_writer, batch))
                self.overlapped += 1
                return batch.count
            if batch.transact:
                self._commit(batch)
            self._finish(batch)
        except BaseException:
            self._forget()  # this batch is dropped (or not acknowledged): what its preparation noted is not sure
            raise
        return batch.count

    def _land(self) -> None:
        """Wait for the commit in flight, then acknowledge it; if either failed, forget (:meth:`_forget`) and raise."""
        if self._flight is None:
            return
        batch, future = self._flight
        self._flight = None
        try:
            future.result()
            self._finish(batch)
        except BaseException:
            self._forget()
            raise

    def _land_quietly(self) -> None:
        """:meth:`_land` when another error is on its way up: that one is raised, this one only logged."""
        try:
            self._land()
        except Exception:  # forgotten by _land; the caller raises its own error
            logger.debug("Mirror: the commit in flight failed too", exc_info=True)

    def _forget(self) -> None:
        """Forget what this mirror knows, as a restart would: a batch failed to commit or to be acknowledged.

        The versions it wrote, its deferred jobs and what it knew of its pending entries were
        noted when the batches were prepared (:meth:`_prepare`), the next one's perhaps too: none
        of it is sure any more. The next step reads this consumer's pending entries again, from
        the first, and asks the database what it holds (what a restarted mirror does).
        """
        self._written.clear()
        self._deferred.clear()
        self._defer_counts.clear()
        self._pending_after.clear()
        self._no_pending.clear()

    def _close_writer(self) -> None:
        """Close the writer thread's database connection and end the thread (after :meth:`_land`)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.submit(_close_connection, self.using).result()  # the writer thread's own connection
            finally:
                writer.shutdown(wait=True)

    def _skip_stored(
        self, jobs: dict[str, int], final: dict[str, tuple[str, str]], recorded: list[tuple[str, str]], ask: list[str]
    ) -> None:
        """Drop from ``jobs`` those of ``ask`` whose stored row is already at least as new as their events.

        For the jobs this mirror's memory (``WRITTEN_CACHE``) does not cover: after a restart,
        or in a burst of more jobs than it remembers, where a job's first event (waiting) and
        its last (completed) are a queue's whole backlog apart and the job would otherwise be
        read from Redis and written twice. One primary-key read for the batch. A finished row
        found so is reported as recorded again (``mirror_done`` is idempotent): the mirror that
        wrote it may have died before it said so.
        """
        written = self._written
        unknown = [job_id for job_id in ask if job_id not in written]
        if not unknown:
            return
        for job_id, (version, state, finished_ms) in stored_versions(unknown, using=self.using).items():
            if version < jobs[job_id]:
                continue
            del jobs[job_id]
            final.pop(job_id, None)
            self.skipped += 1
            self.stored_skips += 1
            written[job_id] = version
            if state in FINAL_EVENTS and finished_ms:
                recorded.append((job_id, str(finished_ms)))

    def drain(self) -> int:
        """Handle batches until no queue has unread or unacknowledged events; return rows written."""
        def steps() -> int:
            written = 0
            while True:
                written += self._step()
                if not self._read:
                    return written

        return self._settled(steps)

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Mirror until ``should_stop()`` returns True (checked at least every second).

        One mirror per deployment: this one writes only while it holds the mirror lease
        (Redis, like the cron leader's); otherwise it stands by and takes over when the lease
        expires (the leader died) or is given up (the leader stopped).
        """
        self._overlap = commits_overlap(self.using)
        try:
            self._run(should_stop)
        finally:
            try:
                self._land_quietly()  # the commit in flight lands (acknowledged) before the lease is given up
            finally:
                self._close_writer()
            if self.token:
                try:
                    get_engine().mirror_renew(self.token, lease_ms=0)  # resign: a standby takes over now
                except Exception:  # Redis down: the lease expires on its own
                    logger.debug("Mirror: could not resign the lease", exc_info=True)
                self.token = ""
            connections[self.using].close()  # this thread's connection

    def lead(self) -> bool:
        """Hold (or try to take) the mirror lease and Redis' hold on the queues; True while leading."""
        now = time.monotonic()
        if self.token and now < self._renew_at:
            return True
        # A term's writes end before it is renewed or lost: the commit in flight lands first.
        self._land()
        engine = get_engine()
        if self.token and not engine.mirror_renew(self.token, lease_ms=self.lease_ms):
            logger.warning("Mirror %s: lost the mirror lease; standing by", self.holder, extra={"action": "mirror_standby"})
            self.token = ""
        if not self.token:
            self.token = engine.mirror_lead(self.holder, lease_ms=self.lease_ms)
            if not self.token:
                if not self._standby_logged:
                    self._standby_logged = True
                    logger.info("Mirror %s stands by: another mirror leads (%s)", self.holder, engine.mirror_leader(),
                                extra={"action": "mirror_standby"})
                return False
            self._standby_logged = False
            self._claim_at = 0.0  # claim what the last leader left at once (step)
            # Deferred entries of an earlier term may have been claimed by another leader: forget them.
            self._deferred.clear()
            self._defer_counts.clear()
            self._pending_after.clear()
            self._no_pending.clear()
            logger.info("Mirror %s leads (lease %s)", self.holder, self.token, extra={"action": "mirror_leader"})
        engine.mirror_hold(self.queues, cap=self.max_lag, hold_ms=self.hold_ms)
        self._renew_at = now + self.lease_ms / 3000
        return True

    def _release_now_and_then(self) -> None:
        """Trim the C heap (:func:`release_memory`) once caught up after a burst, and now and then on the way.

        While behind: every ``10 x RELEASE_AFTER`` rows. Otherwise: at the first step that is not
        behind after one that was (the burst's working set is garbage now), and every
        ``RELEASE_AFTER`` rows.
        """
        if self._behind:
            self._burst = True
            if self._unreleased < RELEASE_AFTER * 10:
                return
        elif not (self._burst and self._unreleased) and self._unreleased < RELEASE_AFTER:
            return
        if self._burst and not self._behind and connections[self.using].vendor == "sqlite":
            # Caught up after a burst: the SQLite connection's cached statements (the tallies' and
            # the version reads' IN lists, one per length) and page cache go too (it reopens at
            # the next batch; an in-memory database's connection is kept, Django's rule).
            self._land()
            connections[self.using].close()
        if self._burst and not self._behind:
            self._compact()
        self._unreleased = 0
        self._burst = False
        if release_memory():
            self.releases += 1

    def _compact(self) -> None:
        """After a burst: keep the newest :data:`WRITTEN_KEPT` versions written, and copy the deferral maps.

        Caught up, the versions of jobs written long ago seldom save a read (their events are
        behind the mirror; a job it no longer remembers is asked of the database, or read and
        written again, version-checked). The kept ids are copied so that the memory their
        neighbours used can be freed, and dicts emptied by deletions are rebuilt (a dict does not
        shrink): a 100,000-job burst otherwise left ~30 MB of Python objects behind.
        """
        kept = list(self._written.items())[-WRITTEN_KEPT:]
        self._written = OrderedDict((job_id.encode().decode(), version) for job_id, version in kept)
        self._deferred = {queue: dict(jobs) for queue, jobs in self._deferred.items()}
        self._defer_counts = {queue: dict(counts) for queue, counts in self._defer_counts.items()}
        forget_memos()  # the burst's times and payloads (rows.MEMO_MAX entries each at most)

    def _run(self, should_stop: Callable[[], bool]) -> None:
        errors = 0
        from django_jobs.outage import OutageLog

        outage = OutageLog(logger, "Mirror")
        prune_at = time.monotonic()
        while not should_stop():
            try:
                if not self.lead():
                    until = time.monotonic() + self.lease_ms / 3000
                    while not should_stop() and time.monotonic() < until:
                        time.sleep(0.05)
                    continue
                cpu = time.process_time()
                self._unreleased += self._step()  # the last batch's commit may still be in flight (commits_overlap)
                self._release_now_and_then()
                cpu = time.process_time() - cpu
                if time.monotonic() >= prune_at:
                    self._land()
                    prune_at = time.monotonic() + self.prune_interval
                    pruned = prune(using=self.using)
                    if pruned:
                        logger.info("Mirror: pruned %d finished job rows", pruned, extra={"action": "mirror_pruned"})
                if not self._read:
                    self._land()
                    # Idle: block until an event arrives, then linger too (a job enqueued while
                    # the mirror idles is often done within LINGER: one row write, not two).
                    pause = self.linger if get_engine().mirror_wait(self._tips, IDLE_WAIT) else 0.0
                else:
                    # Linger (MIRROR["LINGER"]) after a round of fewer entries than BATCH per
                    # queue (coalesce a job's events, more rows per transaction; a read made
                    # short by batch entries naming many jobs counts as small too); after any
                    # batch, rest long enough that the mirror uses at most MAX_CPU_SHARE of a
                    # core (CATCH_UP_CPU_SHARE while behind).
                    pause = self.linger if self._read < self.batch * len(self.queues) else 0.0
                    share = CATCH_UP_CPU_SHARE if self._behind else self.max_cpu_share
                    pause = max(pause, cpu * (1 / share - 1) if share < 1 else 0.0)
                    if pause > 0:
                        self._land()  # only a mirror that reads on at once keeps a commit in flight
                until = time.monotonic() + min(pause, IDLE_WAIT)
                while not should_stop() and time.monotonic() < until:
                    time.sleep(min(0.05, max(0.001, until - time.monotonic())))
                if errors:
                    logger.info("Mirror: working again after %d failed attempt(s)", errors)
                errors = 0
                outage.ok()
            except Exception as exc:  # noqa: BLE001 - Redis or the database down: retry, nothing was acknowledged
                errors += 1
                self._land_quietly()  # a failed commit makes the mirror forget (_forget): pending entries are read again
                connections[self.using].close()
                delay = min(5.0, 0.1 * 2 ** min(errors, 6))
                outage.failed(exc, delay)  # one line per Redis outage, not a traceback per retry
                until = time.monotonic() + delay
                while not should_stop() and time.monotonic() < until:
                    time.sleep(min(0.1, delay))


def mirror_once(queues: Iterable[str] | None = None) -> int:
    """Write every event not yet mirrored into the database; return the number of rows written.

    For tests, the admin's "refresh" and scripts; ``runworkers`` runs the mirror continuously.

    >>> mirror_once(["default"])  # doctest: +SKIP
    3
    """
    return Mirror(queues).drain()


def mirror_lag(queues: Iterable[str] | None = None) -> dict[str, MirrorLag]:
    """Return how far the mirror is behind on each of ``queues`` (default: all), read from Redis.

    ``behind``: events not yet acknowledged; ``age``: seconds since the oldest of them;
    ``unrecorded``: finished jobs Redis keeps until the mirror recorded them; ``held``: a
    mirror holds the queue (lossless); ``lost``: finished jobs that left before it recorded them.

    >>> mirror_lag(["default"])["default"].behind  # doctest: +SKIP
    0
    """
    engine = get_engine()
    return {queue: engine.mirror_lag(queue, MIRROR_GROUP) for queue in (list(queues) if queues else get_settings().queue_names)}
