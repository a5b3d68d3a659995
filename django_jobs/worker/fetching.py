"""Fetching: claims up to the free slots per call; the fetcher thread blocks when idle, job threads lead when busy."""

from __future__ import annotations

import logging
import math
import threading

from django_jobs.engine.queue import FetchResult
from django_jobs.worker import faults
from django_jobs.worker.executor import Prepared, RunningJob
from django_jobs.worker.settling import BACKOFF_MAX, BACKOFF_MIN
from django_jobs.worker.state import WorkerState

logger = logging.getLogger("django_jobs.worker")

#: Longest blocking wait on idle queues, seconds (bounds how long a stale wake-up can take).
IDLE_WAIT = 5.0
#: Jobs whose recent average run time is below this (seconds) are claimed ahead of free threads.
SHORT_JOB = 0.05


class Fetching(WorkerState):
    """Claim jobs while there are free slots; wait on the queues' markers when there is nothing to do."""

    def _rotated_queues(self) -> list[str]:
        # Queues are tried in their configured order; with several queues, start from a
        # rotating point so a busy first queue cannot starve the rest.
        queues = self.queues
        if len(queues) > 1:
            self._rotation = (self._rotation + 1) % len(queues)
            queues = queues[self._rotation :] + queues[: self._rotation]
        return [shard for queue in queues for shard in self._rotated_shards(queue)]

    def _rotated_shards(self, queue: str) -> list[str]:
        # A sharded queue (docs/scaling.md#sharded-queues) is fetched shard by shard, each taking
        # its turn first, so no shard waits behind the others.
        shards = self.engine.shards(queue)
        if len(shards) == 1:
            return shards
        turn = self._shard_turns[queue] = (self._shard_turns.get(queue, -1) + 1) % len(shards)
        return shards[turn:] + shards[:turn]

    def _fetcher_thread(self) -> None:
        """One of the fetcher threads: take the fetcher's role when it is free, and run the job it kept.

        With fetch on wake there are two: the one whose wait ended with jobs keeps the first sync
        job and runs it on its own thread (no hand-off to a job thread) while the other, which
        was waiting for the role, fetches; it then waits for the role in turn.

        The role is handed over as the kept job starts, not before: the wake-up of the other
        thread is then off the path to the job's first line. It is still handed over before
        anything can block: before its thread waits for a running slot (``_run_sync``), and
        before the first code of the user's runs (signal receivers, log handlers, middleware, the
        job: ``executor.run_sync``'s ``on_start``); at the latest when the run ends (a job that
        never starts, an error).
        """
        while True:
            with self._lock:
                self._role_waiting += 1
                while self._role_taken and not self.stopping.is_set() and not self.draining.is_set():
                    self._role_cond.wait(1.0)  # not woken by every finished job (they notify ``_cond``)
                self._role_waiting -= 1
                if self.stopping.is_set() or self.draining.is_set():
                    return
                self._role_taken = True
                self._fetch_active = True
            kept = None
            try:
                kept = self._fetch_loop()
            finally:
                if kept is None:
                    self._hand_over_role()
            if kept is None:
                return
            handed = False

            def hand_over() -> None:
                nonlocal handed
                if not handed:
                    handed = True
                    self._hand_over_role()

            try:
                self._run_sync(*kept, on_start=hand_over)
            except Exception:
                logger.exception("Worker %s: unexpected error in a fetcher thread's job", self.worker_id)
            finally:
                hand_over()

    def _hand_over_role(self) -> None:
        """Give up the fetcher's role: the other fetcher thread, waiting for it, takes it."""
        with self._lock:
            self._role_taken = False
            self._fetcher_idle()  # what is pending goes to the completer until a fetcher fetches again
            self._role_cond.notify_all()

    def _fetch_loop(self) -> tuple[RunningJob, Prepared] | None:
        """Fetch until stopped (None), or until an idle wait ended with a sync job this thread keeps."""
        backoff = BACKOFF_MIN
        woke = self._woke  # what the fetch that ended the last idle wait claimed (from the other fetcher thread)
        self._woke = None
        while not self.stopping.is_set() and not self.draining.is_set():
            if woke is None:
                with self._lock:
                    # While job threads fetch for themselves (_pulling) the claims are theirs: this thread
                    # fetches when one is due and none of them can (``_fetcher_due``, _wake_waiters), or
                    # after a second without a wake-up (it looks for itself).
                    while not self.stopping.is_set() and not self.draining.is_set():
                        if self._claim_now() and (self._fetcher_due or not self._pulling()):
                            break
                        if not self._cond.wait(1.0):
                            self._fetcher_due = True
                    self._fetcher_due = False
                    free = self._usable()
                    threads = self._free - self.ahead  # jobs it can start at once (no claim-ahead)
                    claimed_at = self._claimed  # a job thread may fetch before this thread does
                if self.stopping.is_set() or self.draining.is_set():
                    break
                if self.max_jobs is not None:
                    free = min(free, self.max_jobs - self._claimed)
                    if free <= 0:
                        self.recycle(f"it claimed {self._claimed} job(s), the max jobs per child")
                        break
            try:
                if woke is not None:
                    got, next_due, more = woke
                    woke = None
                else:
                    with self._lock:
                        settles, relayed = self._settles, self._relayed
                    got, next_due = self._fetch_round(free, threads, claimed_at=claimed_at)
                    more = got > 0
                self._lead_ok = more and not self._thread_bound  # job threads fetch (lead) while the queue is busy
                self._outage.ok()
                backoff = BACKOFF_MIN
                if more:
                    continue
                if self._thread_bound:
                    # A queue with a concurrency limit has room but every thread here is busy:
                    # fetch again as soon as one frees (its jobs are never claimed ahead).
                    with self._lock:
                        self._cond.wait_for(
                            lambda: self._free - self.ahead > 0 or self.stopping.is_set() or self.draining.is_set(),
                            timeout=IDLE_WAIT,
                        )
                    continue
                if self.burst:
                    # Idle only if nothing was settled since the fetch started: a retry settled
                    # meanwhile puts its job back in a queue this round did not see it in.
                    with self._lock:
                        idle = self._free == self.capacity and not self._leases and self._settles == settles
                        # The heartbeat's relay may have woken a flow parent since the fetch started.
                        idle = idle and self._relayed == relayed
                    if idle and next_due < 0 and self.engine.flow_outbox:
                        if self._relay(parts_now=True):
                            continue  # flow steps delivered to other slots: a parent may be waiting now
                        with self._lock:
                            # A heartbeat pass that delivered while this round fetched has counted it by now.
                            idle = self._relayed == relayed
                    if idle and next_due < 0:
                        logger.info("Worker %s: queues are empty, burst done", self.worker_id)
                        self.request_stop()
                        break
                timeout = IDLE_WAIT if next_due < 0 else min(IDLE_WAIT, next_due / 1000)
                if self.burst:
                    timeout = min(timeout, 0.1)
                with self._lock:
                    self._fetcher_idle()  # while it waits, the completer settles what finishes
                try:
                    woke, kept = self._idle_wait(timeout)
                finally:
                    with self._lock:
                        self._fetch_active = True
                if kept is not None:
                    self._woke = woke  # the other fetcher thread goes on from here
                    return kept
            except Exception as exc:  # noqa: BLE001 - never let the heartbeat die
                self._outage.failed(exc, backoff, "fetching jobs")
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        return None

    def _idle_wait(self, timeout: float) -> tuple[tuple[int, int, bool] | None, tuple[RunningJob, Prepared] | None]:
        """Block on the queues' markers for up to ``timeout`` seconds; fetch on wake-up where one round trip can.

        With one queue (of one shard) on one server, the wait and the fetch that follows it go
        in one round trip (:meth:`Engine.fetch_on_wake`): the jobs come back in the wake-up's
        own reply and are dispatched here. It claims at most the free threads (no claim-ahead:
        they can only grow while it waits). Returns (claimed, ms until the next due job or -1,
        whether to fetch again at once), or None after a plain wait (the caller fetches); and the
        first sync job claimed, kept for this thread to run when the other fetcher thread is free
        to take over the fetching (else None: every job went to the job threads).
        """
        shards = self._wake_shards()
        count = 0
        if len(shards) == 1 and not self.burst and self.engine.fetches_on_wake:
            # No job thread starts a fetch while this one waits idle (``_fetch_active`` is off): one
            # in flight ends first, so the count is what is free once it has dispatched.
            with self._fetch_lock, self._lock:
                count = min(self._usable(), self._free - self.ahead)
            if self.max_jobs is not None:
                count = min(count, self.max_jobs - self._claimed)
        if count <= 0:
            self.engine.wait_for_work(self.queues, timeout)
            return None, None
        queue = shards[0]
        self._waiting_thread = threading.current_thread()
        try:
            try:
                res = self.engine.fetch_on_wake(
                    queue, timeout, count, lease_ms=self.lease_ms, worker_id=self.worker_id, start_now=count,
                    blocked=self._waiting_on,
                )
            finally:
                self._blocked_id = None
            self._thread_bound = False
            kept = None
            queued = 0
            with self._fetch_lock:
                if self.stopping.is_set() or self.draining.is_set():
                    # Woken (or unblocked) while stopping: hand the claims back at once.
                    if res.jobs:
                        self.engine.release(queue, [(c.id, c.token) for c in res.jobs])
                    return (0, -1, False), None
                if res.jobs:
                    faults.point("after_fetch")
                for claimed in res.jobs:
                    # Keep one only while the other fetcher thread waits for the role (it fetches meanwhile).
                    keep = kept is None and self._role_waiting > 0
                    took = self._dispatch(claimed, keep=keep)
                    if isinstance(took, tuple):
                        kept = took
                    elif took:
                        queued += 1
            self._wake_job_threads(queued)
        finally:
            self._waiting_thread = None
        got = len(res.jobs)
        return (got, res.next_due_ms, got > 0 and (got >= count or res.next_due_ms == 0)), kept

    def _waiting_on(self, client_id: int | None) -> None:
        """The fetcher's blocking connection is ``client_id`` (:meth:`end_idle_wait` unblocks it)."""
        self._blocked_id = client_id
        if self.stopping.is_set() or self.draining.is_set():
            self.end_idle_wait()  # stopped while the wait was being sent

    def end_idle_wait(self) -> None:
        """End the fetcher's blocking wait now (from any thread): what it claims is handed back while stopping."""
        client_id = self._blocked_id
        if client_id is not None:
            try:
                self.engine.unblock(client_id)
            except Exception as exc:  # noqa: BLE001 - best effort: the wait ends by itself within IDLE_WAIT
                logger.debug("Worker %s could not end its idle wait: %s", self.worker_id, exc)

    def _wake_shards(self) -> list[str]:
        """The shards of every queue this worker serves (fetch-on-wake needs exactly one)."""
        if self._shard_names is None:
            self._shard_names = [shard for queue in self.queues for shard in self.engine.shards(queue)]
        return self._shard_names

    def _claim_now(self) -> bool:
        """Claim now? While short jobs claimed ahead still wait for a thread, free slots gather first.

        Only while claiming ahead (short jobs: each one finishing wakes the fetcher again soon).
        The caller holds ``_cond``.
        """
        usable = self._usable()
        return usable > 0 and (not self._unstarted or usable * 2 >= self.ahead or self._avg_run >= SHORT_JOB)

    def _may_lead(self) -> bool:
        """Should the calling job thread fetch now (and does it hold the fetch lock)? The caller holds ``_lock``.

        While the last fetch found work and jobs are short (claimed ahead), a claim that is due
        (:meth:`_claim_now`) is fetched by a job thread whose run ended, when no fetch is in
        flight (the fetch lock, taken without waiting). Not while the fetcher thread waits idle
        on the markers (``_fetch_active`` off), nor while stopping or recycling; nor with
        ``max_jobs`` (the fetcher counts them) or one job thread (``_can_lead``: its fetches would
        no longer overlap its runs).
        """
        return (
            self._lead_ok and self._avg_run < SHORT_JOB and self._can_lead and self._fetch_active
            and self._claim_now() and not self.stopping.is_set() and not self.draining.is_set()
            and self._fetch_lock.acquire(blocking=False)
        )

    def _pulling(self) -> bool:
        """Do job threads fetch for themselves now (:meth:`_may_lead`, short of the claim)? The caller holds ``_lock``."""
        return self._lead_ok and self._avg_run < SHORT_JOB and self._can_lead and self._fetch_active

    def _lead(self) -> int:
        """Fetch on a job thread that holds the fetch lock (:meth:`_may_lead`); return how many jobs it claimed.

        What it claims goes to ``_ready``, the other job threads woken one per job queued but the
        one this thread runs next. A fetch that finds nothing, or fails, or meets a concurrency
        limit, leaves the fetching to the fetcher thread (``_lead_ok`` off: the idle wait, the
        limit's wait and the outage back-off are its).
        """
        got = 0
        try:
            with self._lock:
                free = self._usable()
                threads = self._free - self.ahead
            if free > 0:
                got, _ = self._fetch_round(free, threads, leader=True)
        except Exception as exc:  # noqa: BLE001 - the fetcher thread retries, reports and backs off
            logger.debug("Worker %s: a job thread's fetch failed, the fetcher takes over: %r", self.worker_id, exc)
            got = 0
        finally:
            self._lead_ok = got > 0 and not self._thread_bound
            self._fetch_lock.release()
        return got

    def _usable(self) -> int:
        """Jobs the fetcher may claim now (caller holds ``_cond``)."""
        if self._avg_run < SHORT_JOB:
            return self._free
        return max(0, self._free - self.ahead)

    def _fetch_round(
        self, free: int, threads: int | None = None, *, claimed_at: int | None = None, leader: bool = False,
    ) -> tuple[int, int]:
        """Claim up to ``free`` jobs across the queues; return (claimed, ms until the next due job or -1).

        ``threads``: how many of them can start at once. A queue with a concurrency limit in
        force claims only that many (a job claimed ahead would count as running while it
        waits); ``_thread_bound`` is set when such a queue was cut to none.

        ``claimed_at``: ``_claimed`` when ``free`` was counted; what job threads claimed since is
        taken off it (they fetch too, :meth:`_lead`). ``leader``: the caller, a job thread, holds
        the fetch lock already and runs one of the jobs queued itself (one fewer to wake).
        """
        got = 0
        next_due = -1
        threads = free if threads is None else threads
        spare = 1 if leader else 0  # the leading job thread takes one of the jobs queued: not woken for
        self._thread_bound = False
        for queue in self._rotated_queues():
            if free <= 0:
                break
            if not leader:
                self._fetch_lock.acquire()
            try:
                if self.stopping.is_set() or self.draining.is_set():
                    break
                if claimed_at is not None and (others := self._claimed - claimed_at - got) > 0:
                    # Claimed by a job thread since ``free`` was counted (stable: dispatched under the fetch lock).
                    free -= others
                    threads -= others
                    claimed_at += others
                    if free <= 0:
                        break
                res = self._settle_and_fetch(queue, free, max(0, min(threads, free)))
                if res.jobs:
                    faults.point("after_fetch")
                queued = 0
                for claimed in res.jobs:
                    if self._dispatch(claimed) is True:
                        queued += 1
            finally:
                if not leader:
                    self._fetch_lock.release()
            if queued > spare:
                self._wake_job_threads(queued - spare)
            if queued:
                spare = 0
            if res.limited and threads <= 0:
                self._thread_bound = True
            threads -= len(res.jobs)
            free -= len(res.jobs)
            got += len(res.jobs)
            if res.next_due_ms >= 0 and (next_due < 0 or res.next_due_ms < next_due):
                next_due = res.next_due_ms
        return got, next_due

    def _settle_and_fetch(self, queue: str, count: int, start_now: int) -> FetchResult:
        """Fetch from ``queue``; the pending outcomes of its jobs ride along (one round trip, settled first).

        The caller holds ``_fetch_lock``. The settle's reply is read before the claimed jobs are
        dispatched: a retry without delay settled here and claimed again by this very fetch is a
        new run of the same id, whose lease the settle's reply must not drop (``_drop_lease``).
        Outcomes the settle could not write go back to the completer, which retries them.
        """
        with self._lock:
            if self._unstarted or not self._pending:
                items = self._take_outcomes(queue)
            else:
                # Every claimed job has started: the job threads wait for this fetch, which must not
                # wait for a settle's Redis time too. The completer settles beside it, at once.
                items = []
                self._pending_since = -math.inf
                self._settle_cond.notify()
        if not items:
            return self.engine.fetch(queue, count, lease_ms=self.lease_ms, worker_id=self.worker_id, start_now=start_now)
        try:
            faults.point("before_settle")
            codes, res = self.engine.settle_and_fetch(
                queue, [outcome for _, outcome in items], count, lease_ms=self.lease_ms, worker_id=self.worker_id,
                start_now=start_now,
            )
        except BaseException:
            with self._lock:
                self._give_back(items)
            raise
        if isinstance(codes, Exception):
            logger.debug("Worker %s: settling with the fetch failed, the completer retries: %r", self.worker_id, codes)
            with self._lock:
                self._give_back(items)
        else:
            faults.point("after_settle")
            self._settled(items, codes)
        return res
