"""Settling: the completer thread writes finished jobs' outcomes in batches (one script call per queue)."""

from __future__ import annotations

import logging
import queue as queue_mod
import time
from collections import defaultdict
from typing import Any

from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.queue import Outcome
from django_jobs.exceptions import RedisOutOfMemory, RedisUnavailable
from django_jobs.worker import faults
from django_jobs.worker.executor import RunningJob
from django_jobs.worker.state import STOP, WorkerState

logger = logging.getLogger("django_jobs.worker")

#: Most outcomes settled in one call.
SETTLE_BATCH = 500
#: Retry delays after a failed Redis call, seconds: doubled from the first up to the last.
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
#: Attempts to settle a batch that fails with an unexpected (non-connection) error.
SETTLE_TRIES = 3


class Settling(WorkerState):
    """Free a job's slot when it ends, queue its outcome, settle the outcomes in batches."""

    def _free_slot(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()

    def _job_done(self, job: RunningJob, outcome: Outcome) -> None:
        with self._cond:
            self._free += 1
            decided = job.decided
            job.decided = True
            self._cond.notify_all()
        if not decided:
            self._done.put((job, outcome))

    def _complete_loop(self) -> None:
        stop = False
        while not stop:
            item = self._done.get()
            batch: list[tuple[RunningJob, Outcome]] = []
            if item is STOP:
                stop = True
            else:
                batch.append(item)
            while len(batch) < SETTLE_BATCH:
                try:
                    item = self._done.get_nowait()
                except queue_mod.Empty:
                    break
                if item is STOP:
                    stop = True
                    continue
                batch.append(item)
            if batch:
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
            with self._cond:
                for (job, _), code in zip(items, codes):
                    self._drop_lease(job)  # not the lease of a run claimed since (a retry without delay)
                    if code == ScriptCode.NOT_OWNER:
                        logger.warning("Job %s: lease lost, outcome dropped (another worker owns it now)", job.id)
                self.processed += sum(1 for code in codes if code)  # 0: given up
                self._settles += 1
                self._cond.notify_all()

    def _forget(self, jobs: Any) -> None:
        """Stop renewing ``jobs``' leases (recovery hands them to another run)."""
        with self._cond:
            for job in jobs:
                self._drop_lease(job)
