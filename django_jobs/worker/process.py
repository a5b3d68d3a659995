"""One worker process: claims jobs, runs them on threads (and an event loop), settles them.

Threads of a worker process:

* **fetcher** claims up to the free slots per call, blocks on the queues' marker keys
  when there is nothing to do (no polling); finished jobs' outcomes ride its next fetch of
  their queue (settle and fetch pipelined: one round trip, worker/settling.py);
* **completer** settles the outcomes no fetch carries in batches (one script call per queue
  per batch): while the fetcher waits idle, after ``SETTLE_AFTER``, and at shutdown;
* **heartbeat** renews all leases in one call per queue, enforces timeouts, runs
  stalled-job recovery and writes the worker's heartbeat;
* ``threads`` job threads for sync jobs, and one event loop thread for async jobs (both share
  the same ``threads`` slots). Job threads pull (leader/follower): one whose run ends takes the
  next claimed job in the same lock round, and while short jobs keep the queue busy it does the
  fetch itself when one is due and none is in flight, running the first job it claimed with no
  hand-off (:meth:`WorkerProcess._job_thread`); the fetcher thread then only waits on the
  markers, fetches for async and long jobs, and takes over when a fetch comes back empty.

The main thread only waits for signals. Signal handlers do nothing but wake it (through
:func:`signal.set_wakeup_fd`), so no lock is ever taken inside a handler. In a worker
forked by the supervisor:

* SIGTERM stops fetching, lets running jobs finish within ``grace`` seconds, releases what
  is left and exits. Repeating it changes nothing: under systemd (``KillMode=control-group``)
  a worker gets SIGTERM both from systemd and from its supervisor;
* SIGUSR1 (the supervisor's answer to a second SIGTERM) and SIGUSR2 (the supervisor died,
  see :func:`die_with_parent`) release running jobs at once and exit;
* SIGINT is ignored: Ctrl-C reaches the whole process group, the supervisor handles it.

Run in the foreground (``child=False``), SIGTERM and SIGINT stop gracefully and a second one
releases at once. The heartbeat keeps renewing leases until the shutdown is over, so a job
that finishes within the grace period is never taken for stalled.

The class is built from parts: fetching (worker/fetching.py), settling (worker/settling.py), the
heartbeat (worker/heartbeat.py) and the shared state they declare (worker/state.py); here are the
lifecycle and the running of claimed jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from django_jobs import runtime
from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.queue import Claimed, Engine, Outcome
from django_jobs.lifeline import die_with_parent
from django_jobs.outage import OutageLog
from django_jobs.worker import (
    executor,
    isolation,
)
from django_jobs.worker.executor import Prepared, RunningJob
from django_jobs.worker.fetching import Fetching
from django_jobs.worker.heartbeat import Heartbeat
from django_jobs.worker.settling import Settling
from django_jobs.worker.state import EXIT_RECYCLED, TICK
from django_jobs.worker.wakeup import WakeupPipe

logger = logging.getLogger("django_jobs.worker")

#: While Redis stays unreachable, a worker repeats its warning at most this often, seconds.
OUTAGE_LOG_EVERY = 30.0
#: How long the shutdown waits for outcomes to be written after the grace period, seconds.
FLUSH_TIMEOUT = 5.0
#: How long the shutdown waits for the fetcher to end its idle wait (and hand back what it claimed), seconds.
FETCHER_JOIN = 2.0
#: Signals a worker forked by the supervisor handles.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def make_worker_id() -> str:
    """Return a unique id for this worker process: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _ignore(signum: int, frame: Any) -> None:
    """Python-level handler of the signals routed to the wake-up pipe (the pipe does the work)."""


class WorkerProcess(Fetching, Settling, Heartbeat):
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
        parent_pid: int | None = None,
        max_jobs: int | None = None,
        max_memory_mb: int | None = None,
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
        #: Recycle (stop fetching, finish running jobs, exit) after claiming this many jobs / past this RSS.
        self.max_jobs = max_jobs
        self.max_memory_mb = max_memory_mb
        self.draining = threading.Event()  # recycling: no more fetching; exit once the running jobs are settled
        self.exit_code = 0
        self._claimed = 0
        self._memory_warned = False

        self.stopping = threading.Event()  # no more fetching; the main thread shuts down
        self.fast = threading.Event()  # release running jobs now
        self.stopped = threading.Event()  # shutdown over: the heartbeat stops renewing
        lock = self._lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._settle_cond = threading.Condition(lock)
        self._role_cond = threading.Condition(lock)
        self._job_cond = threading.Condition(lock)  # idle job threads wait here for a claimed job
        # Capacity counts claimed jobs not yet finished: the threads, plus as many again
        # claimed ahead while recent jobs are short (a thread that finishes takes its next job
        # at once instead of waiting a round trip). Long jobs are never claimed ahead, so no
        # job waits behind a slow one while another worker is idle.
        self.ahead = threads
        self.capacity = threads + self.ahead
        self._free = self.capacity
        self._avg_run = 1.0  # moving average of sync job run time, seconds (starts "long")
        self._unstarted: set[str] = set()  # handed to the thread pool, not yet running
        self._thread_bound = False  # last fetch round: a concurrency-limited queue found no free thread
        self._fetch_lock = threading.Lock()
        self._pending: list[tuple[RunningJob, Outcome]] = []
        self._pending_since = 0.0
        self._fetch_active = False
        self._settle_stop = False
        self._leases: dict[str, RunningJob] = {}
        # Sync jobs claimed, taken in order by the ``threads`` job threads (under ``_lock``).
        self._ready: deque[tuple[RunningJob, Prepared]] = deque()
        self._job_idle = 0  # job threads waiting on ``_job_cond``
        self._lead_ok = False  # the last fetch found work: job threads may fetch (lead) while jobs are short
        self._jobs_stop = False  # shutdown over: job threads end once no claimed job is left
        self._fetcher_due = False  # while job threads lead: the fetcher thread fetches the claim due (_wake_waiters)
        # Job threads may fetch (lead): not with max_jobs (the fetcher counts the claims), nor with
        # one job thread (a fetch of its own would no longer overlap a run, as the fetcher's does).
        self._can_lead = max_jobs is None and threads > 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._rotation = 0
        self._shard_turns: dict[str, int] = {}  # per sharded queue: the shard fetched first last round
        self._shard_names: list[str] | None = None
        self._blocked_id: int | None = None
        self._role_taken = False  # a fetcher thread holds the fetcher's role
        self._role_waiting = 0  # fetcher threads waiting for it
        self._woke: tuple[int, int, bool] | None = None
        self._waiting_thread: threading.Thread | None = None  # the fetcher thread in a fetch-on-wake wait
        self._running = 0  # sync jobs running now (job threads and a fetcher thread's kept job)
        self._run_waiting = 0  # threads waiting in _run_sync for a running slot
        self._ppid = parent_pid if parent_pid is not None else os.getppid()
        self._deadline: float | None = None
        self._outage = OutageLog(logger, f"Worker {self.worker_id}", repeat_every=OUTAGE_LOG_EVERY)
        self._child = False
        self._signals = 0
        # The main thread sleeps on this pipe; signals (set_wakeup_fd) and request_stop() write to it.
        self._pipe = WakeupPipe()
        self._saved_handlers: dict[int, Any] = {}
        self.processed = 0
        self.started_at = time.time()
        self._settles = 0  # settle calls so far (burst mode: was anything settled meanwhile?)
        self._relayed = 0  # flow steps the relay delivered so far (burst mode: the same question)
        self._relay_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the fetcher, completer and heartbeat threads."""
        # Fetch on wake (one queue, one server): two fetcher threads take turns (worker/fetching.py).
        fetchers = 2 if len(self._wake_shards()) == 1 and not self.burst and self.engine.fetches_on_wake else 1
        loops = [(self._fetcher_thread, "fetcher"), (self._complete_loop, "completer"), (self._heartbeat_loop, "heartbeat")]
        loops += [(self._fetcher_thread, f"fetcher_{n}") for n in range(1, fetchers)]
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"djj-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for n in range(self.threads):
            threading.Thread(target=self._job_thread, name=f"djj-job_{n}", daemon=True).start()

    def install_signals(self, *, child: bool) -> None:
        """Route SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 to the main thread (call it from the main thread).

        ``child``: forked by the supervisor (SIGTERM does not escalate, SIGINT is ignored).
        """
        self._child = child
        self._pipe.route_signals()
        for sig in SIGNALS:
            self._saved_handlers[sig] = signal.signal(sig, signal.SIG_IGN if child and sig == signal.SIGINT else _ignore)

    def _restore_signals(self) -> None:
        if not self._saved_handlers:
            return
        self._pipe.unroute_signals()
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)
        self._saved_handlers.clear()

    def _on_signal(self, signum: int) -> None:
        """React to a signal, in the main thread (never inside a handler)."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._signals += 1
            if not self.stopping.is_set():
                logger.info("Worker %s stopping: finishing running jobs (grace %.0f s)", self.worker_id, self.grace,
                            extra={"action": "worker_stopping"})
                self.request_stop()
            elif not self._child and self._signals > 1:
                self._stop_now("second signal")
        elif signum == signal.SIGUSR1:
            self._stop_now("supervisor asked")
        elif signum == signal.SIGUSR2:
            self._parent_gone()

    def _stop_now(self, why: str) -> None:
        if not self.fast.is_set():
            logger.warning("Worker %s: %s, releasing running jobs now", self.worker_id, why,
                           extra={"action": "worker_stopping_now"})
        self.fast.set()
        self.request_stop()

    def _parent_gone(self) -> None:
        if not self.fast.is_set():
            logger.warning("Worker %s: supervisor is gone, releasing jobs and exiting", self.worker_id,
                           extra={"action": "worker_orphaned"})
        self.fast.set()
        self.request_stop()

    def request_stop(self) -> None:
        """Stop fetching and begin the shutdown (from any thread; not from a signal handler)."""
        self.stopping.set()
        with self._lock:
            self._cond.notify_all()
            self._role_cond.notify_all()
        self._pipe.wake()

    def _wait_main(self, timeout: float | None) -> None:
        """Block the main thread until a signal or a wake-up arrives, or ``timeout`` passes."""
        for signum in self._pipe.wait(timeout):
            self._on_signal(signum)

    def run(self) -> int:
        """Run until stopped; return the exit code."""
        self._pipe.open()
        self.start()
        try:
            while not self.stopping.is_set():
                self._wait_main(0.1 if self.draining.is_set() else None)
                if self.draining.is_set() and not self.stopping.is_set() and self._drained():
                    self.exit_code = EXIT_RECYCLED
                    self.request_stop()
            self.shutdown()
        finally:
            if not self._child:  # a child exits now: its handlers stay until the end
                self._restore_signals()
                self._pipe.close()
        return self.exit_code

    def recycle(self, why: str, level: int = logging.INFO) -> None:
        """Stop fetching, let the running jobs finish, then exit with :data:`EXIT_RECYCLED` (any thread)."""
        if self.draining.is_set() or self.stopping.is_set():
            return
        logger.log(level, "Worker %s recycling: %s; finishing its running jobs, then exiting", self.worker_id, why,
                   extra={"action": "worker_recycling", "worker": self.worker_id})
        self.draining.set()
        with self._lock:
            self._cond.notify_all()
        self.end_idle_wait()
        self._pipe.wake()

    def _drained(self) -> bool:
        """True once a recycling worker holds no job (and, holding the fetch lock, can claim none)."""
        if not self._fetch_lock.acquire(timeout=0.1):
            return False
        try:
            with self._lock:
                return not self._leases
        finally:
            self._fetch_lock.release()

    def shutdown(self) -> None:
        """Finish or release running jobs, flush outcomes, and forget this worker."""
        self.stopping.set()
        with self._lock:
            self._cond.notify_all()
        deadline = self._deadline = time.monotonic() + self.grace
        # A claim in flight is dispatched before the running jobs are looked at. Bounded: a
        # fetch may hang on an unreachable Redis (what it claims is recovered after its lease).
        while not self._fetch_lock.acquire(timeout=0.1):
            if self.fast.is_set() or time.monotonic() >= deadline:
                break
            self._wait_main(0)
        else:
            self._fetch_lock.release()
        # A fetcher blocked in a fetch-on-wake wait is woken now: what that fetch claims is handed
        # back by the fetcher before the process exits (never left to its lease).
        self.end_idle_wait()
        waiting = self._waiting_thread
        if waiting is not None:
            waiting.join(timeout=max(0.0, min(FETCHER_JOIN, deadline - time.monotonic())))
        while not self.fast.is_set():
            with self._lock:
                running = sum(1 for job in self._leases.values() if not job.decided and job.id not in self._unstarted)
            left = deadline - time.monotonic()
            if not running or left <= 0:
                break
            self._wait_main(min(0.1, left))
        # Everything still running is released: its late outcome is dropped locally and
        # refused by the fenced settle script anyway.
        with self._lock:
            undecided = [job for job in self._leases.values() if not job.decided]
            for job in undecided:
                job.decided = True
        self._release(undecided)
        # Outcomes of finished jobs are written before the heartbeat stops renewing their leases.
        with self._lock:
            self._settle_stop = True
            self._settle_cond.notify()
        for thread in self._threads:
            if thread.name == "djj-completer":
                thread.join(timeout=max(deadline - time.monotonic(), 0) + FLUSH_TIMEOUT)
        self.stopped.set()
        for thread in self._threads:
            if thread.name == "djj-heartbeat":
                thread.join(timeout=2.0)
        with contextlib.suppress(Exception):  # best effort while exiting
            self.engine.forget_worker(self.worker_id)
        with self._lock:
            self._jobs_stop = True  # after the jobs still queued, which see ``stopping`` and are not run
            self._job_cond.notify_all()
        self._stop_event_loop()

    def _release(self, jobs: list[RunningJob]) -> None:
        by_queue: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for job in jobs:
            by_queue[job.queue].append((job.id, job.claimed.token))
            if job.child_pid:
                isolation.kill(job.child_pid)  # before the release: another worker may take the job at once
            if job.future is not None:
                job.future.cancel()  # the async job stops with the worker
        for queue, leases in by_queue.items():
            try:
                count = self.engine.release(queue, leases)
            except Exception as exc:  # noqa: BLE001 - never let the heartbeat die
                logger.warning("Worker %s could not release %d job(s) of %r (recovered when their lease expires): %s",
                               self.worker_id, len(leases), queue, exc)
                continue
            logger.info("Worker %s released %d unfinished job(s) of %r back to waiting", self.worker_id, count, queue,
                        extra={"action": "jobs_released", "queue": queue})
        with self._lock:
            for job in jobs:
                self._drop_lease(job)

    def _stop_event_loop(self) -> None:
        loop, thread = self._loop, self._loop_thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=1.0)
        if not thread.is_alive():
            loop.close()

    # -- running claimed jobs ---------------------------------------------------------------

    def _dispatch(self, claimed: Claimed, *, keep: bool = False) -> tuple[RunningJob, Prepared] | bool:
        """Start running a claimed job; ``keep``: return a plain sync job for the calling thread to run instead.

        A sync job (most) takes one lock round: its slot, its lease and its place among the
        unstarted jobs, all before it is decoded (as when each had a round of its own); an async
        job, or one that cannot run, takes a second to leave the unstarted. Returns True when the
        job was queued for the job threads (``_ready``; the caller wakes them, one per job queued:
        :meth:`_wake_job_threads`), False when it went elsewhere (the event loop) or failed.
        """
        job = RunningJob(claimed)
        with self._lock:
            self._free -= 1
            self._claimed += 1
            self._leases[job.id] = job
            self._unstarted.add(job.id)  # taken back below unless it waits for a job thread
        runtime.register(job)
        prepared: Prepared | None
        failure: Outcome | None
        try:
            prepared = Prepared(job, self.worker_id)
        except Exception as exc:  # noqa: BLE001 - a job that cannot even be decoded fails, the others run
            prepared, failure = None, executor.terminal_outcome(job, exc)
        else:
            job.prepared = prepared
            failure = prepared.failure
            if failure is None and prepared.task.isolated:
                job.isolated = True  # sync or async, it runs in a child forked from a job thread
        if failure is None and prepared is not None and (job.isolated or not prepared.is_async):
            job.started = math.inf  # its timeout clock starts when a thread runs it
            if keep and not job.isolated:
                return job, prepared
            self._ready.append((job, prepared))  # atomic; a job thread may take it before the wake-up
            return True
        with self._lock:
            self._unstarted.discard(job.id)
            if failure is not None:
                self._run_ended(job, failure)
        if failure is None and prepared is not None:
            job.future = asyncio.run_coroutine_threadsafe(self._run_async(job, prepared), self._event_loop())
        return False

    def _wake_job_threads(self, queued: int) -> None:
        """Wake one idle job thread per job just queued in ``_ready`` (not all of them: ``notify(n)``)."""
        if queued > 0:
            with self._lock:
                self._job_cond.notify(queued)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=loop.run_forever, name="djj-asyncio", daemon=True)
            self._loop_thread.start()
            self._loop = loop
        return self._loop

    def _job_thread(self) -> None:
        """One of the ``threads`` job threads: run claimed sync jobs, fetching them itself at saturation, until stopped.

        Job threads pull (leader/follower). A run's end and the start of the next claimed job
        (``_ready``) are one lock round (its thread, its slot, its outcome; the next job's running
        slot). While short jobs keep the queue busy (:meth:`_may_lead`) a thread whose run ends
        does the fetch that is due itself when none is in flight (the fetch lock taken without
        waiting): what it claims goes to ``_ready``, one idle job thread is woken per other job
        queued, and it runs the first one without a hand-off. The fetcher thread is woken only
        when no job thread leads (:meth:`_wake_waiters`).
        """
        lock, ready = self._lock, self._ready
        job: RunningJob | None = None
        prepared: Prepared | None = None
        outcome: Outcome | None = None
        ended = False
        led = -1  # what this thread's last fetch claimed (-1: it did not fetch)
        while True:
            lead = False
            started: float | None = None
            with lock:
                freed = job is not None
                if job is not None:  # the end of the run before, in the round that takes the next job
                    self._running -= 1
                    if ended:
                        self._run_ended(job, outcome, wake=False)
                    if self._run_waiting:
                        self._cond.notify_all()  # a running slot is free, whether or not this thread leads
                    job = None
                if led >= 0:
                    freed = freed or not self._lead_ok  # a fetch that found no work: the fetcher takes over
                    led = -1
                while True:
                    if self._may_lead():
                        lead = True  # this thread holds the fetch lock now
                        break
                    if freed:
                        self._wake_waiters(pull=True)
                        freed = False
                    if ready:
                        job, prepared = ready.popleft()
                        started = self._start(job)
                        break
                    if self._jobs_stop:
                        return
                    self._job_idle += 1
                    try:
                        self._job_cond.wait()
                    finally:
                        self._job_idle -= 1
            if lead:
                led = self._lead()
                continue
            if started is None or job is None or prepared is None:
                job = None  # not run (stopping, or released meanwhile): its slot was freed by _start
                continue
            ended = False
            try:
                outcome = self._run_started(job, prepared, started)
                ended = True
            except Exception:
                logger.exception("Worker %s: unexpected error in a job thread", self.worker_id)
            except BaseException:
                with lock:
                    self._running -= 1
                    self._wake_waiters()
                raise

    def _start(self, job: RunningJob) -> float | None:
        """Start ``job`` on the calling thread once a running slot is free (the caller holds ``_lock``).

        Returns its start time, or None when it must not run (the worker is stopping, or it was
        released meanwhile): its slot is freed then, and it is released with the rest.
        """
        # At most ``threads`` sync jobs run at once: a fetcher thread may run one it kept
        # (fetch on wake) while the job threads take the jobs claimed after it.
        while self._running >= self.threads and not self.stopping.is_set() and not job.decided:
            self._run_waiting += 1
            try:
                self._cond.wait(1.0)
            finally:
                self._run_waiting -= 1
        self._unstarted.discard(job.id)
        if self.stopping.is_set() or job.decided:
            # Claimed ahead but the worker is stopping: released with the rest, never run.
            self._free += 1
            self._cond.notify_all()
            return None
        self._running += 1
        job.started = started = time.monotonic()
        return started

    def _run_sync(self, job: RunningJob, prepared: Prepared, on_start: Callable[[], None] | None = None) -> None:
        """Run a claimed sync job on this (fetcher) thread once a running slot is free.

        ``on_start`` (a fetcher thread's hand-over of its role) is called before this thread
        waits for a slot, or else as the job starts, before any code of the user's
        (``executor.run_sync``); not at all when the job never starts.
        """
        with self._lock:
            if on_start is not None and self._running >= self.threads:
                on_start()  # never waits holding the fetcher's role
                on_start = None
            started = self._start(job)
            if started is None:
                return
        ended = False
        outcome: Outcome | None = None
        try:
            outcome = self._run_started(job, prepared, started, on_start)
            ended = True
        finally:
            # One lock round for the end of a run: its thread, its slot and its outcome.
            with self._lock:
                self._running -= 1
                if ended:
                    self._run_ended(job, outcome)
                else:
                    self._wake_waiters()

    def _run_started(
        self, job: RunningJob, prepared: Prepared, started: float, on_start: Callable[[], None] | None = None,
    ) -> Outcome | None:
        """Run a started sync job; return its outcome (None: released, or its lease lost: no outcome)."""
        if job.isolated:
            if on_start is not None:
                on_start()
            try:
                return isolation.run_isolated(job, prepared, parent_pid=os.getpid(), abandoned=lambda: job.decided)
            except Exception as exc:  # noqa: BLE001 - never let the heartbeat die
                return executor.error_outcome(job, prepared, exc)
        try:
            outcome = executor.run_sync(job, prepared, on_start=on_start)
        except BaseException as exc:  # noqa: BLE001 - cancelled at shutdown, or a BaseException
            outcome = prepared.outcome_for_error(job, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        self._avg_run += (time.monotonic() - started - self._avg_run) * 0.1
        return outcome

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

def quiet_django_task_logging() -> None:
    """Disconnect django.tasks' own "Task ... state=..." log receivers in a worker process.

    The executor logs every outcome itself (with duration, attempt and traceback), so
    Django's receivers would log each job twice and cost a fifth of a no-op job's CPU.
    The django.tasks signals are still sent to every other receiver.
    """
    from django_jobs.compat import signals

    signals.task_started.disconnect(signals.log_task_started)
    signals.task_finished.disconnect(signals.log_task_finished)


def run_worker_process(
    *, queues: list[str], threads: int, grace: float, burst: bool = False, child: bool = True, parent_pid: int | None = None,
    max_jobs: int | None = None, max_memory_mb: int | None = None,
) -> int:
    """Entry point of a worker process (forked by the supervisor, or run in the foreground).

    The supervisor forks with :data:`SIGNALS` blocked; they are unblocked here once the
    worker's own handling is in place, so a signal sent during start-up is not lost.
    """
    if child:
        die_with_parent()
    quiet_django_task_logging()
    worker = WorkerProcess(queues=queues, threads=threads, grace=grace, burst=burst, parent_pid=parent_pid,
                           max_jobs=max_jobs, max_memory_mb=max_memory_mb)
    worker.install_signals(child=child)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    if child and parent_pid is not None and os.getppid() != parent_pid:
        worker._parent_gone()  # the supervisor died before PR_SET_PDEATHSIG took effect
    logger.info("Worker %s ready: queues %s, %d thread(s)", worker.worker_id, ",".join(queues), threads,
                extra={"action": "worker_ready"})
    return worker.run()
