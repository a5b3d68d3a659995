"""The heartbeat thread: renews leases, enforces timeouts, runs recovery, beats, watches memory."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import defaultdict

from django_jobs.worker import executor, faults
from django_jobs.worker.executor import RunningJob
from django_jobs.worker.state import EXIT_TIMEOUT, TICK, WorkerState

logger = logging.getLogger("django_jobs.worker")

def rss_mb() -> float:
    """Return this process' resident memory in MB (Linux: now; elsewhere: the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


#: How often the heartbeat reads the process' memory use when ``max_memory_mb`` is set, seconds.
MEMORY_CHECK_EVERY = 1.0

#: How often a worker that settles nothing relays flow steps (on a cluster), seconds. It relays at
#: the next tick after each settle (its own settles record most steps) and after a pass that
#: delivered or a recovery that handled jobs; steps others recorded (a worker that died before
#: relaying) wait at most this long. Relaying at every tick kept an idle worker above 1 % CPU.
RELAY_IDLE_EVERY = 1.0


def _after_deliver() -> None:
    faults.point("after_deliver")


class Heartbeat(WorkerState):
    """Keep this worker's leases and heartbeat alive; stop jobs past their timeout."""

    def _heartbeat_loop(self) -> None:
        next_renew = next_recover = next_beat = next_memory = next_relay = 0.0
        relayed_after = -1  # the settle count at the last relay pass (``_settles``)
        while not self.stopped.wait(TICK):
            now = time.monotonic()
            try:
                self._enforce_timeouts(now)
                if self.max_memory_mb is not None and now >= next_memory:
                    next_memory = now + MEMORY_CHECK_EVERY
                    self._check_memory()
                reached = False  # did this tick talk to Redis (and so prove it is back)?
                if now >= next_renew:
                    reached = self._renew()  # a failed renewal is tried again at the next tick
                    next_renew = now + self.renew_every
                if now >= next_recover:
                    next_recover = now + self.recover_every
                    if self._recover():
                        next_relay = now  # a recovered flow job may have recorded steps
                    reached = True
                if now >= next_beat:
                    next_beat = now + 5.0
                    self._beat()
                    reached = True
                settles = self._settles
                if self.engine.flow_outbox and (settles != relayed_after or now >= next_relay):
                    # The next tick after a settle: the delay a cross-slot flow step waits for.
                    relayed_after = settles
                    delivered = self._relay(_after_deliver)
                    next_relay = now + (TICK if delivered else RELAY_IDLE_EVERY)
                    reached = True
                if reached:
                    self._outage.ok()
            except Exception as exc:  # noqa: BLE001 - never let the heartbeat die
                self._outage.failed(exc, TICK, "renewing leases")
            if os.getppid() != self._ppid and not self.fast.is_set():
                self._parent_gone()

    def _recover(self) -> int:
        """Recover the expired leases of this worker's queues; return how many jobs were handled."""
        handled = 0
        for queue in self.queues:
            result = self.engine.recover(queue)
            handled += len(result.jobs)
            for job_id, what, cid in result.jobs:
                extra = {"action": f"job_{what}", "job_id": job_id, "queue": queue, "correlation_id": cid,
                         "worker": self.worker_id}
                if what == "stalled":
                    logger.warning("Job %s stalled (its worker stopped renewing the lease): back to waiting", job_id, extra=extra)
                elif what == "failed":
                    logger.error("Job %s failed: its worker was lost too many times (worker_lost)", job_id, extra=extra)
                else:
                    logger.info("Job %s cancelled: its worker was lost after a cancel request", job_id, extra=extra)
        return handled

    def _enforce_timeouts(self, now: float) -> None:
        expired: list[RunningJob] = []
        with self._lock:
            for job in self._leases.values():
                if (
                    job.timeout and not job.decided and now - job.started > job.timeout
                    and job.future is None and not job.isolated  # those stop themselves
                ):
                    job.decided = True
                    expired.append(job)
        for job in expired:
            self._queue_outcome(job, executor.timeout_outcome(job, job.prepared))
        if expired and self._child and not self.stopping.is_set():
            # The job's thread cannot be stopped: the outcome is settled as usual, the other
            # running jobs get the grace period to finish (the rest is released), and the
            # process exits so that the supervisor starts a fresh one without the stuck thread.
            names = ", ".join(f"{job.name} {job.id}" for job in expired)
            logger.error(
                "Worker %s: job %s passed its timeout and its thread cannot be stopped; finishing the other jobs "
                "(grace %.0f s) and exiting to be replaced", self.worker_id, names, self.grace,
                extra={"action": "worker_replacing", "worker": self.worker_id},
            )
            self.exit_code = EXIT_TIMEOUT
            self.request_stop()

    def _renew(self) -> bool:
        """Extend this worker's leases; return False when it holds none (no call made)."""
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        with self._lock:
            sent = dict(self._leases)  # the runs renewed: a reply is about them, not about a run claimed since
            for job in sent.values():
                by_queue[job.queue].append((job.id, job.claimed.token))
        for queue, leases in by_queue.items():
            lost, cancel = self.engine.renew(queue, leases, lease_ms=self.lease_ms)
            faults.point("after_renew")
            with self._lock:
                for job_id in lost:
                    # Another run owns the job now: stop renewing, drop this run's outcome. A run of
                    # this worker claimed since (a retry without delay) keeps its lease.
                    gone = sent[job_id]
                    if self._drop_lease(gone) and not gone.decided:
                        logger.warning("Job %s: lease lost, its outcome will be dropped", job_id)
                    gone.decided = True
            for job_id in cancel:
                asked = self._leases.get(job_id)
                if asked is not None and not asked.cancel_event.is_set():
                    asked.cancel_event.set()
                    if asked.future is not None:
                        asked.future.cancel()
        return bool(by_queue)

    def _beat(self) -> None:
        with self._lock:
            busy = min(self.threads, self.capacity - self._free)
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            "threads": self.threads,
            "running": busy,
            "processed": self.processed,
            "started": self.started_at,
        }
        self.engine.heartbeat(self.worker_id, info)

    def _check_memory(self) -> None:
        """Recycle once the process uses more than ``max_memory_mb`` (not before its first job: a fresh one would too)."""
        used = rss_mb()
        if used <= (self.max_memory_mb or math.inf):
            return
        if self._claimed == 0:
            if not self._memory_warned:
                self._memory_warned = True
                logger.warning(
                    "Worker %s uses %.0f MB before running any job, over the max memory per child of %d MB: "
                    "it is not recycled (a fresh process would start as big); raise the limit", self.worker_id, used,
                    self.max_memory_mb, extra={"action": "worker_memory_limit_too_low", "worker": self.worker_id},
                )
            return
        self.recycle(f"it uses {used:.0f} MB, over the max memory per child of {self.max_memory_mb} MB", logging.WARNING)
