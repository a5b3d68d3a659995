"""One worker process: claims jobs, runs them on threads (and an event loop), settles them.

Threads of a worker process:

* **fetcher** claims up to the free slots per call, blocks on the queues' marker keys
  when there is nothing to do (no polling);
* **completer** settles finished jobs in batches (one script call per queue per batch);
* **heartbeat** renews all leases in one call per queue, enforces timeouts, runs
  stalled-job recovery and writes the worker's heartbeat;
* a thread pool of ``threads`` for sync jobs, and one event loop thread for async jobs
  (both share the same ``threads`` slots).

The main thread only waits for signals: SIGTERM stops fetching, lets running jobs finish
within ``grace`` seconds, releases what is left and exits; a second SIGTERM releases at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import queue as queue_mod
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.queue import Claimed, Engine, Outcome
from django_jobs.exceptions import RedisUnavailable
from django_jobs.worker import executor
from django_jobs.worker.executor import Prepared, RunningJob

logger = logging.getLogger("django_jobs.worker")

#: Longest blocking wait on idle queues, seconds (bounds how long a stale wake-up can take).
IDLE_WAIT = 5.0
#: Heartbeat thread tick, seconds (timeouts are enforced at this granularity).
TICK = 0.25
#: Most outcomes settled in one call.
SETTLE_BATCH = 500
_STOP = object()


def make_worker_id() -> str:
    """Return a unique id for this worker process: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def die_with_parent(sig: int = signal.SIGUSR2) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class WorkerProcess:
    """Run jobs from ``queues`` with ``threads`` slots until stopped."""

    def __init__(
        self,
        *,
        queues: list[str],
        threads: int = 8,
        grace: float = 25.0,
        burst: bool = False,
        engine: Engine | None = None,
        worker_id: str | None = None,
    ) -> None:
        settings = get_settings()
        self.queues = list(queues)
        self.threads = threads
        self.grace = grace
        self.burst = burst
        self.engine = engine or get_engine()
        self.worker_id = worker_id or make_worker_id()
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.renew_every = max(TICK, settings.lease_seconds / 3)
        self.recover_every = settings.recovery_interval

        self.stopping = threading.Event()  # no more fetching
        self.stopped = threading.Event()  # main loop may exit
        self.fast = threading.Event()  # second signal: release at once
        self._cond = threading.Condition()
        self._free = threads
        self._fetch_lock = threading.Lock()
        self._done: queue_mod.SimpleQueue[Any] = queue_mod.SimpleQueue()
        self._leases: dict[str, RunningJob] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="djj-job")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rotation = 0
        self._ppid = os.getppid()
        self._signals = 0
        self.processed = 0
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the fetcher, completer and heartbeat threads."""
        for target, name in ((self._fetch_loop, "fetcher"), (self._complete_loop, "completer"), (self._heartbeat_loop, "heartbeat")):
            thread = threading.Thread(target=target, name=f"djj-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def install_signals(self, *, ignore_sigint: bool) -> None:
        """Handle SIGTERM (graceful, then fast) and SIGUSR2 (parent died: fast)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGUSR2, self._on_parent_death)
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info("Worker %s stopping: finishing running jobs (grace %.0f s)", self.worker_id, self.grace)
            self.request_stop()
        else:
            logger.warning("Worker %s: second signal, releasing running jobs now", self.worker_id)
            self.fast.set()
            self.request_stop()

    def _on_parent_death(self, signum: int, frame: Any) -> None:
        logger.warning("Worker %s: supervisor is gone, releasing jobs and exiting", self.worker_id)
        self.fast.set()
        self.request_stop()

    def request_stop(self) -> None:
        """Stop fetching and begin the shutdown (safe from signal handlers)."""
        self.stopping.set()
        self.stopped.set()
        with self._cond:
            self._cond.notify_all()

    def run(self) -> int:
        """Run until stopped; return the exit code."""
        self.start()
        while not self.stopped.wait(1.0):
            pass
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Finish or release running jobs, flush outcomes, and forget this worker."""
        self.stopping.set()
        with self._fetch_lock:  # no claim is in flight after this
            pass
        deadline = time.monotonic() + self.grace
        while not self.fast.is_set() and time.monotonic() < deadline:
            with self._cond:
                if self._free == self.threads:
                    break
                self._cond.wait(0.1)
        # Everything still running is released: its late outcome is dropped locally and
        # refused by the fenced settle script anyway.
        with self._cond:
            undecided = [job for job in self._leases.values() if not job.decided]
            for job in undecided:
                job.decided = True
        self._done.put(_STOP)
        for thread in self._threads:
            if thread.name == "djj-completer":
                thread.join(timeout=10)
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for job in undecided:
            by_queue[job.queue].append((job.id, job.claimed.token))
        for queue, leases in by_queue.items():
            try:
                count = self.engine.release(queue, leases)
                logger.info("Worker %s released %d unfinished job(s) of %r back to waiting", self.worker_id, count, queue)
            except RedisUnavailable as exc:
                logger.warning("Could not release jobs (they will be recovered when their lease expires): %s", exc)
        try:
            self.engine.forget_worker(self.worker_id)
        except Exception:  # noqa: BLE001 - best effort while exiting
            pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- fetching -------------------------------------------------------------------------

    def _rotated_queues(self) -> list[str]:
        # Queues are tried in their configured order; with several queues, start from a
        # rotating point so a busy first queue cannot starve the rest.
        queues = self.queues
        if len(queues) > 1:
            self._rotation = (self._rotation + 1) % len(queues)
            return queues[self._rotation :] + queues[: self._rotation]
        return queues

    def _fetch_loop(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            with self._cond:
                while self._free == 0 and not self.stopping.is_set():
                    self._cond.wait(1.0)
                free = self._free
            if self.stopping.is_set():
                break
            got = 0
            next_due = -1
            try:
                for queue in self._rotated_queues():
                    if free <= 0:
                        break
                    with self._fetch_lock:
                        if self.stopping.is_set():
                            break
                        res = self.engine.fetch(queue, free, lease_ms=self.lease_ms, worker_id=self.worker_id)
                        for claimed in res.jobs:
                            self._dispatch(claimed)
                    free -= len(res.jobs)
                    got += len(res.jobs)
                    if res.next_due_ms >= 0 and (next_due < 0 or res.next_due_ms < next_due):
                        next_due = res.next_due_ms
                if got:
                    backoff = 0.1
                    continue
                if self.burst:
                    with self._cond:
                        idle = self._free == self.threads and not self._leases
                    if idle and next_due < 0:
                        logger.info("Worker %s: queues are empty, burst done", self.worker_id)
                        self.request_stop()
                        break
                timeout = IDLE_WAIT if next_due < 0 else min(IDLE_WAIT, next_due / 1000)
                if self.burst:
                    timeout = min(timeout, 0.1)
                self.engine.wait_for_work(self.queues, timeout)
                backoff = 0.1
            except RedisUnavailable as exc:
                logger.warning("Worker %s cannot reach Redis, retrying in %.1f s: %s", self.worker_id, backoff, exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # noqa: BLE001 - never let the fetcher die
                logger.exception("Worker %s: unexpected error while fetching", self.worker_id)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, claimed: Claimed) -> None:
        job = RunningJob(claimed)
        prepared = Prepared(job, self.worker_id)
        job.prepared = prepared
        with self._cond:
            self._free -= 1
            self._leases[job.id] = job
        executor.running[job.id] = job
        if prepared.failure is not None:
            self._job_done(job, prepared.failure)
        elif prepared.is_async:
            job.future = asyncio.run_coroutine_threadsafe(self._run_async(job, prepared), self._event_loop())
        else:
            self._pool.submit(self._run_sync, job, prepared)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="djj-asyncio", daemon=True).start()
            self._loop = loop
        return self._loop

    def _run_sync(self, job: RunningJob, prepared: Prepared) -> None:
        try:
            outcome = executor.run_sync(job, prepared)
        except BaseException as exc:  # noqa: BLE001 - e.g. SystemExit raised by a job
            outcome = prepared.outcome_for_error(job, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        self._job_done(job, outcome)

    async def _run_async(self, job: RunningJob, prepared: Prepared) -> None:
        try:
            outcome = await executor.run_async(job, prepared)
        except BaseException as exc:  # noqa: BLE001 - cancelled at shutdown, or a BaseException
            if isinstance(exc, asyncio.CancelledError) and not job.cancel_event.is_set():
                # Cancelled because the worker is stopping: the job is released, not settled.
                self._free_slot()
                return
            outcome = prepared.outcome_for_error(job, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        self._job_done(job, outcome)

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

    # -- settling -------------------------------------------------------------------------

    def _complete_loop(self) -> None:
        stop = False
        while not stop:
            item = self._done.get()
            batch: list[tuple[RunningJob, Outcome]] = []
            if item is _STOP:
                stop = True
            else:
                batch.append(item)
            while len(batch) < SETTLE_BATCH:
                try:
                    item = self._done.get_nowait()
                except queue_mod.Empty:
                    break
                if item is _STOP:
                    stop = True
                    continue
                batch.append(item)
            if batch:
                self._settle(batch)

    def _settle(self, batch: list[tuple[RunningJob, Outcome]]) -> None:
        by_queue: dict[str, list[tuple[RunningJob, Outcome]]] = defaultdict(list)
        for job, outcome in batch:
            by_queue[job.queue].append((job, outcome))
        for queue, items in by_queue.items():
            backoff = 0.1
            while True:
                try:
                    codes = self.engine.settle(queue, [o for _, o in items])
                    break
                except RedisUnavailable as exc:
                    # Keep the outcomes: Redis comes back, or the lease expires and the job is
                    # recovered (a duplicate run after a fault, never a lost job).
                    if self.fast.is_set() and backoff > 1:
                        logger.error("Giving up settling %d job(s): %s", len(items), exc)
                        codes = [0] * len(items)
                        break
                    logger.warning("Cannot settle %d job(s), retrying in %.1f s: %s", len(items), backoff, exc)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            with self._cond:
                for (job, _), code in zip(items, codes):
                    self._leases.pop(job.id, None)
                    executor.running.pop(job.id, None)
                    if code == ScriptCode.NOT_OWNER:
                        logger.warning("Job %s: lease lost, outcome dropped (another worker owns it now)", job.id)
                self.processed += len(items)
                self._cond.notify_all()

    # -- heartbeat, timeouts, recovery ----------------------------------------------------

    def _heartbeat_loop(self) -> None:
        next_renew = next_recover = next_beat = 0.0
        while not self.stopped.wait(TICK):
            now = time.monotonic()
            try:
                self._enforce_timeouts(now)
                if now >= next_renew:
                    next_renew = now + self.renew_every
                    self._renew()
                if now >= next_recover:
                    next_recover = now + self.recover_every
                    for queue in self.queues:
                        recovered, failed = self.engine.recover(queue)
                        if recovered or failed:
                            logger.warning(
                                "Recovered %d stalled job(s) of %r (%d failed as worker_lost)", recovered, queue, failed,
                                extra={"action": "jobs_recovered", "queue": queue},
                            )
                if now >= next_beat:
                    next_beat = now + 5.0
                    self._beat()
            except RedisUnavailable as exc:
                logger.warning("Heartbeat cannot reach Redis: %s", exc)
            except Exception:  # noqa: BLE001 - never let the heartbeat die
                logger.exception("Worker %s: unexpected error in heartbeat", self.worker_id)
            if os.getppid() != self._ppid and not self.stopping.is_set():
                self._on_parent_death(0, None)

    def _enforce_timeouts(self, now: float) -> None:
        expired: list[RunningJob] = []
        with self._cond:
            for job in self._leases.values():
                if job.timeout and not job.decided and now - job.started > job.timeout and job.future is None:
                    job.decided = True
                    expired.append(job)
        for job in expired:
            self._done.put((job, executor.timeout_outcome(job, job.prepared)))

    def _renew(self) -> None:
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        with self._cond:
            for job in self._leases.values():
                by_queue[job.queue].append((job.id, job.claimed.token))
        for queue, leases in by_queue.items():
            lost, cancel = self.engine.renew(queue, leases, lease_ms=self.lease_ms)
            with self._cond:
                for job_id in lost:
                    job = self._leases.get(job_id)
                    if job is not None and not job.decided:
                        job.decided = True
                        logger.warning("Job %s: lease lost, its outcome will be dropped", job_id)
            for job_id in cancel:
                job = self._leases.get(job_id)
                if job is not None and not job.cancel_event.is_set():
                    job.cancel_event.set()
                    if job.future is not None:
                        job.future.cancel()

    def _beat(self) -> None:
        with self._cond:
            busy = self.threads - self._free
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            "threads": self.threads,
            "running": busy,
            "processed": self.processed,
            "beat": time.time(),
        }
        self.engine.heartbeat(self.worker_id, json.dumps(info), ttl_s=60)


def run_worker_process(*, queues: list[str], threads: int, grace: float, burst: bool = False, child: bool = True) -> int:
    """Entry point of a worker process (forked by the supervisor, or run in the foreground)."""
    if child:
        die_with_parent()
    worker = WorkerProcess(queues=queues, threads=threads, grace=grace, burst=burst)
    worker.install_signals(ignore_sigint=child)
    logger.info("Worker %s ready: queues %s, %d thread(s)", worker.worker_id, ",".join(queues), threads)
    return worker.run()
