"""Settling: the completer thread writes finished jobs' outcomes in batches (one script call per queue)."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from typing import Any

from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.queue import Outcome
from django_jobs.exceptions import RedisOutOfMemory, RedisUnavailable
from django_jobs.worker import faults
from django_jobs.worker.executor import RunningJob
from django_jobs.worker.state import WorkerState

logger = logging.getLogger("django_jobs.worker")

#: Most outcomes settled in one call.
SETTLE_BATCH = 500
#: How long the completer leaves outcomes for the busy fetcher's next fetch to carry, seconds.
SETTLE_AFTER = 0.005
#: Retry delays after a failed Redis call, seconds: doubled from the first up to the last.
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
#: Attempts to settle a batch that fails with an unexpected (non-connection) error.
SETTLE_TRIES = 3


class Settling(WorkerState):
    """Free a job's slot when it ends, keep its outcome pending, settle the pending outcomes in batches.

    While the fetcher is busy fetching (:attr:`_fetch_active`), the outcomes ride its next fetch
    of their queue (:meth:`_take_outcomes`: one round trip for the settle and the fetch); the
    completer thread settles them when the fetcher waits idle or has not taken them within
    :data:`SETTLE_AFTER`, and at shutdown.
    """

    def _free_slot(self) -> None:
        with self._lock:
            self._run_ended(None, None)

    def _job_done(self, job: RunningJob, outcome: Outcome) -> None:
        with self._lock:
            self._run_ended(job, outcome)

    def _run_ended(self, job: RunningJob | None, outcome: Outcome | None, *, wake: bool = True) -> None:
        """A run ended: free its slot, keep its outcome, wake who can act now (the caller holds ``_cond``).

        The one body of a run's end. An outcome of a run decided already (released, lease lost,
        timed out) is dropped; ``outcome`` None frees the slot only. ``wake`` False: the caller,
        a job thread, wakes the waiters itself unless it fetches (:meth:`_wake_waiters`).
        """
        self._free += 1
        if job is not None and outcome is not None and not job.decided:
            job.decided = True
            self._add_outcome(job, outcome)
        if wake:
            self._wake_waiters()

    def _wake_waiters(self, *, pull: bool = False) -> None:
        """A slot was freed: wake the threads waiting on ``_cond`` if what one waits for holds now (the caller holds ``_cond``).

        Not on every finished job: while short jobs are claimed ahead the fetcher waits until
        half the claim-ahead slots are free (:meth:`_claim_now`), so it is woken once per batch
        instead of once per job. The waits: the fetcher's for :meth:`_claim_now`, its wait for a
        free thread (a concurrency-limited queue), a job thread's for a running slot
        (``_run_waiting``); stopping and recycling notify on their own.

        While job threads fetch for themselves (:meth:`_pulling`) the claim that is due is theirs:
        ``pull`` (the caller is a job thread that could not lead: a fetch is in flight, or no claim
        is due) wakes nobody; a slot freed elsewhere (an async job, a fetcher thread's kept job)
        wakes one idle job thread to lead, or the fetcher thread when every job thread is busy.
        A fetch in flight needs no wake-up: its thread looks again when it is done.
        """
        if self._run_waiting:
            self._cond.notify_all()
        elif not self._pulling():
            if self._free > self.ahead or self._claim_now():
                self._cond.notify_all()
        elif not pull and self._claim_now() and not self._fetch_lock.locked():
            if self._job_idle:
                self._job_cond.notify()
            else:
                self._fetcher_due = True
                self._cond.notify_all()

    def _add_outcome(self, job: RunningJob, outcome: Outcome) -> None:
        """Keep ``job``'s outcome for the next settle (the caller holds ``_cond``)."""
        if not self._pending:
            self._pending_since = time.monotonic()
            if not self._fetch_active:
                self._settle_cond.notify()  # no fetch to ride: the completer settles it now
        self._pending.append((job, outcome))

    def _queue_outcome(self, job: RunningJob, outcome: Outcome) -> None:
        """Settle ``job``'s outcome soon (from any thread; its slot is freed by its own thread)."""
        with self._lock:
            self._add_outcome(job, outcome)

    def _take_outcomes(self, queue: str) -> list[tuple[RunningJob, Outcome]]:
        """Take the pending outcomes of ``queue``, to settle with its next fetch (the caller holds ``_cond``)."""
        if not self._pending:
            return []
        taken: list[tuple[RunningJob, Outcome]] = []
        rest: list[tuple[RunningJob, Outcome]] = []
        for item in self._pending:
            (taken if item[0].queue == queue and len(taken) < SETTLE_BATCH else rest).append(item)
        self._pending = rest
        return taken

    def _give_back(self, items: list[tuple[RunningJob, Outcome]]) -> None:
        """Hand outcomes a fetch could not settle to the completer, at once (it retries; the caller holds ``_cond``)."""
        self._pending[:0] = items
        self._pending_since = -math.inf
        self._settle_cond.notify()

    def _fetcher_idle(self) -> None:
        """The fetcher waits idle (or stopped fetching): nothing pending rides a fetch now (the caller holds ``_cond``)."""
        self._fetch_active = False
        if self._pending:
            self._settle_cond.notify()

    def _complete_loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    pending = self._pending
                    if pending:
                        waited = time.monotonic() - self._pending_since
                        if self._settle_stop or not self._fetch_active or waited >= SETTLE_AFTER:
                            batch = pending[:SETTLE_BATCH]
                            self._pending = pending[SETTLE_BATCH:]
                            self._pending_since = -math.inf  # what is left is at least as old: next batch at once
                            break
                        self._settle_cond.wait(SETTLE_AFTER - waited)
                    elif self._settle_stop:
                        return
                    else:
                        self._settle_cond.wait()
            try:
                self._settle(batch)
            except Exception:
                logger.exception("Worker %s: unexpected error while settling %d job(s)", self.worker_id, len(batch))
                self._forget(job for job, _ in batch)

    def _giving_up(self) -> bool:
        """True once the shutdown no longer waits for Redis (released at once, or past the grace period)."""
        return self.fast.is_set() or (self._deadline is not None and time.monotonic() > self._deadline)

    def _settle(self, batch: list[tuple[RunningJob, Outcome]]) -> None:
        by_queue: dict[str, list[tuple[RunningJob, Outcome]]] = defaultdict(list)
        for job, outcome in batch:
            by_queue[job.queue].append((job, outcome))
        for queue, items in by_queue.items():
            backoff = BACKOFF_MIN
            errors = 0
            while True:
                try:
                    faults.point("before_settle")
                    codes = self.engine.settle(queue, [o for _, o in items])
                    break
                except Exception as exc:
                    # Keep the outcomes: Redis comes back, or the lease expires and the job is
                    # recovered (a duplicate run after a fault, never a lost job).
                    if not isinstance(exc, (RedisUnavailable, RedisOutOfMemory)):
                        errors += 1  # an outage or a full Redis passes: those are retried until it does
                    if errors >= SETTLE_TRIES or (self._giving_up() and backoff > 1):
                        logger.error(
                            "Worker %s gives up settling %d job(s) of %r; they are recovered when their lease expires: %r",
                            self.worker_id, len(items), queue, exc, exc_info=not isinstance(exc, RedisUnavailable),
                        )
                        codes = [0] * len(items)
                        break
                    self._outage.failed(exc, backoff, "settling jobs")
                    time.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
            faults.point("after_settle")
            self._settled(items, codes)

    def _settled(self, items: list[tuple[RunningJob, Outcome]], codes: list[int]) -> None:
        """Forget the leases of settled runs (one settle call's ``codes``, one per item)."""
        with self._lock:
            for (job, _), code in zip(items, codes):
                self._drop_lease(job)  # not the lease of a run claimed since (a retry without delay)
                if code == ScriptCode.NOT_OWNER:
                    logger.warning("Job %s: lease lost, outcome dropped (another worker owns it now)", job.id)
            self.processed += sum(1 for code in codes if code)  # 0: given up
            self._settles += 1

    def _forget(self, jobs: Any) -> None:
        """Stop renewing ``jobs``' leases (recovery hands them to another run)."""
        with self._lock:
            for job in jobs:
                self._drop_lease(job)
