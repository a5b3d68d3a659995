"""One worker process: claims jobs, runs them on threads (and an event loop), settles them.

Threads of a worker process:

* **fetcher** claims up to the free slots per call, blocks on the queues' marker keys
  when there is nothing to do (no polling);
* **completer** settles finished jobs in batches (one script call per queue per batch);
* **heartbeat** renews all leases in one call per queue, enforces timeouts, runs
  stalled-job recovery and writes the worker's heartbeat;
* a thread pool of ``threads`` for sync jobs, and one event loop thread for async jobs
  (both share the same ``threads`` slots).

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
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import math
import os
import queue as queue_mod
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.codes import ScriptCode
from django_jobs.engine.queue import Claimed, Engine, Outcome
from django_jobs.exceptions import RedisOutOfMemory, RedisUnavailable
from django_jobs.worker import executor, isolation
from django_jobs.worker import faults  # test-only crash points (no-op unless DJJ_FAULT_AT is set)
from django_jobs.worker.executor import Prepared, RunningJob
from django_jobs.worker.wakeup import WakeupPipe

logger = logging.getLogger("django_jobs.worker")

#: Longest blocking wait on idle queues, seconds (bounds how long a stale wake-up can take).
IDLE_WAIT = 5.0
#: Jobs whose recent average run time is below this (seconds) are claimed ahead of free threads.
SHORT_JOB = 0.05
#: Heartbeat thread tick, seconds (timeouts are enforced at this granularity).
TICK = 0.25
#: Most outcomes settled in one call.
SETTLE_BATCH = 500
#: Retry delays after a failed Redis call, seconds: doubled from the first up to the last.
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
#: While Redis stays unreachable, repeat the warning at most this often, seconds.
OUTAGE_LOG_EVERY = 30.0
#: Attempts to settle a batch that fails with an unexpected (non-connection) error.
SETTLE_TRIES = 3
#: How long the shutdown waits for outcomes to be written after the grace period, seconds.
FLUSH_TIMEOUT = 5.0
#: Signals a worker forked by the supervisor handles.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
#: Exit status of a worker that recycled itself (``--max-jobs-per-child``, ``--max-memory-per-child``).
EXIT_RECYCLED = 3
#: Exit status of a worker that exited to be replaced because a sync job passed its timeout.
EXIT_TIMEOUT = 4
#: How often the heartbeat reads the process' memory use when ``max_memory_mb`` is set, seconds.
MEMORY_CHECK_EVERY = 1.0
_STOP = object()


def make_worker_id() -> str:
    """Return a unique id for this worker process: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@functools.cache
def _libc() -> Any:
    """The C library, loaded once (isolated jobs call :func:`die_with_parent` in every child)."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def die_with_parent(sig: int = signal.SIGUSR2) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    try:
        _libc().prctl(1, sig)  # PR_SET_PDEATHSIG
    except AttributeError:
        pass


def _ignore(signum: int, frame: Any) -> None:
    """Python-level handler of the signals routed to the wake-up pipe (the pipe does the work)."""


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


class _Outage:
    """Log that Redis cannot be reached once, then at most every :data:`OUTAGE_LOG_EVERY` s, and when it is back."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._since: float | None = None
        self._logged = 0.0

    def failed(self, doing: str, exc: BaseException, retry_in: float) -> None:
        now = time.monotonic()
        with self._lock:
            first = self._since is None
            if first:
                self._since = now
            log = first or now - self._logged >= OUTAGE_LOG_EVERY
            if log:
                self._logged = now
        if not log:
            return
        if isinstance(exc, RedisUnavailable):
            logger.warning(
                "Worker %s cannot reach Redis while %s, retrying in %.1f s: %s", self.worker_id, doing, retry_in, exc,
                extra={"action": "redis_unavailable"},
            )
        else:
            # Engine calls that do not wrap connection errors yet land here too.
            logger.error(
                "Worker %s: error while %s, retrying in %.1f s: %r", self.worker_id, doing, retry_in, exc,
                exc_info=exc, extra={"action": "worker_error"},
            )

    def ok(self) -> None:
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            logger.warning(
                "Worker %s reached Redis again after %.1f s", self.worker_id, time.monotonic() - since,
                extra={"action": "redis_available"},
            )


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
        self._cond = threading.Condition()
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
        self._done: queue_mod.SimpleQueue[Any] = queue_mod.SimpleQueue()
        self._leases: dict[str, RunningJob] = {}
        # Sync jobs claimed by the fetcher, taken in order by the ``threads`` job threads.
        self._runnable: queue_mod.SimpleQueue[Any] = queue_mod.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._rotation = 0
        self._ppid = parent_pid if parent_pid is not None else os.getppid()
        self._deadline: float | None = None
        self._outage = _Outage(self.worker_id)
        self._child = False
        self._signals = 0
        # The main thread sleeps on this pipe; signals (set_wakeup_fd) and request_stop() write to it.
        self._pipe = WakeupPipe()
        self._saved_handlers: dict[int, Any] = {}
        self.processed = 0
        self.started_at = time.time()
        self._settles = 0  # settle calls so far (burst mode: was anything settled meanwhile?)
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the fetcher, completer and heartbeat threads."""
        for target, name in ((self._fetch_loop, "fetcher"), (self._complete_loop, "completer"), (self._heartbeat_loop, "heartbeat")):
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
        with self._cond:
            self._cond.notify_all()
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
        self._pipe.wake()

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

    def _drained(self) -> bool:
        """True once a recycling worker holds no job (and, holding the fetch lock, can claim none)."""
        if not self._fetch_lock.acquire(timeout=0.1):
            return False
        try:
            with self._cond:
                return not self._leases
        finally:
            self._fetch_lock.release()

    def shutdown(self) -> None:
        """Finish or release running jobs, flush outcomes, and forget this worker."""
        self.stopping.set()
        with self._cond:
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
        while not self.fast.is_set():
            with self._cond:
                running = sum(1 for job in self._leases.values() if not job.decided and job.id not in self._unstarted)
            left = deadline - time.monotonic()
            if not running or left <= 0:
                break
            self._wait_main(min(0.1, left))
        # Everything still running is released: its late outcome is dropped locally and
        # refused by the fenced settle script anyway.
        with self._cond:
            undecided = [job for job in self._leases.values() if not job.decided]
            for job in undecided:
                job.decided = True
        self._release(undecided)
        # Outcomes of finished jobs are written before the heartbeat stops renewing their leases.
        self._done.put(_STOP)
        for thread in self._threads:
            if thread.name == "djj-completer":
                thread.join(timeout=max(deadline - time.monotonic(), 0) + FLUSH_TIMEOUT)
        self.stopped.set()
        for thread in self._threads:
            if thread.name == "djj-heartbeat":
                thread.join(timeout=2.0)
        try:
            self.engine.forget_worker(self.worker_id)
        except Exception:  # noqa: BLE001 - best effort while exiting
            pass
        for _ in range(self.threads):
            self._runnable.put(_STOP)  # after the jobs still queued, which see ``stopping`` and return
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
            except Exception as exc:  # noqa: BLE001 - the leases expire and recovery takes over
                logger.warning("Worker %s could not release %d job(s) of %r (recovered when their lease expires): %s",
                               self.worker_id, len(leases), queue, exc)
                continue
            logger.info("Worker %s released %d unfinished job(s) of %r back to waiting", self.worker_id, count, queue,
                        extra={"action": "jobs_released", "queue": queue})
        with self._cond:
            for job in jobs:
                self._leases.pop(job.id, None)
                executor.running.pop(job.id, None)

    def _stop_event_loop(self) -> None:
        loop, thread = self._loop, self._loop_thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=1.0)
        if not thread.is_alive():
            loop.close()

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
        backoff = BACKOFF_MIN
        while not self.stopping.is_set() and not self.draining.is_set():
            with self._cond:
                while not self._claim_now() and not self.stopping.is_set() and not self.draining.is_set():
                    self._cond.wait(1.0)
                free = self._usable()
                threads = self._free - self.ahead  # jobs it can start at once (no claim-ahead)
            if self.stopping.is_set() or self.draining.is_set():
                break
            if self.max_jobs is not None:
                free = min(free, self.max_jobs - self._claimed)
                if free <= 0:
                    self.recycle(f"it claimed {self._claimed} job(s), the max jobs per child")
                    break
            try:
                with self._cond:
                    settles = self._settles
                got, next_due = self._fetch_round(free, threads)
                self._outage.ok()
                backoff = BACKOFF_MIN
                if got:
                    continue
                if self._thread_bound:
                    # A queue with a concurrency limit has room but every thread here is busy:
                    # fetch again as soon as one frees (its jobs are never claimed ahead).
                    with self._cond:
                        self._cond.wait_for(
                            lambda: self._free - self.ahead > 0 or self.stopping.is_set() or self.draining.is_set(),
                            timeout=IDLE_WAIT,
                        )
                    continue
                if self.burst:
                    # Idle only if nothing was settled since the fetch started: a retry settled
                    # meanwhile puts its job back in a queue this round did not see it in.
                    with self._cond:
                        idle = self._free == self.capacity and not self._leases and self._settles == settles
                    if idle and next_due < 0:
                        logger.info("Worker %s: queues are empty, burst done", self.worker_id)
                        self.request_stop()
                        break
                timeout = IDLE_WAIT if next_due < 0 else min(IDLE_WAIT, next_due / 1000)
                if self.burst:
                    timeout = min(timeout, 0.1)
                self.engine.wait_for_work(self.queues, timeout)
            except Exception as exc:  # noqa: BLE001 - never let the fetcher die
                self._outage.failed("fetching jobs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _claim_now(self) -> bool:
        """Claim now? While short jobs claimed ahead still wait for a thread, free slots gather first.

        Only while claiming ahead (short jobs: each one finishing wakes the fetcher again soon).
        The caller holds ``_cond``.
        """
        usable = self._usable()
        return usable > 0 and (not self._unstarted or usable * 2 >= self.ahead or self._avg_run >= SHORT_JOB)

    def _usable(self) -> int:
        """Jobs the fetcher may claim now (caller holds ``_cond``)."""
        if self._avg_run < SHORT_JOB:
            return self._free
        return max(0, self._free - self.ahead)

    def _fetch_round(self, free: int, threads: int | None = None) -> tuple[int, int]:
        """Claim up to ``free`` jobs across the queues; return (claimed, ms until the next due job or -1).

        ``threads``: how many of them can start at once. A queue with a concurrency limit in
        force claims only that many (a job claimed ahead would count as running while it
        waits); ``_thread_bound`` is set when such a queue was cut to none.
        """
        got = 0
        next_due = -1
        threads = free if threads is None else threads
        self._thread_bound = False
        for queue in self._rotated_queues():
            if free <= 0:
                break
            with self._fetch_lock:
                if self.stopping.is_set() or self.draining.is_set():
                    break
                res = self.engine.fetch(
                    queue, free, lease_ms=self.lease_ms, worker_id=self.worker_id, start_now=max(0, min(threads, free))
                )
                if res.jobs:
                    faults.point("after_fetch")
                for claimed in res.jobs:
                    self._dispatch(claimed)
            if res.limited and threads <= 0:
                self._thread_bound = True
            threads -= len(res.jobs)
            free -= len(res.jobs)
            got += len(res.jobs)
            if res.next_due_ms >= 0 and (next_due < 0 or res.next_due_ms < next_due):
                next_due = res.next_due_ms
        return got, next_due

    def _dispatch(self, claimed: Claimed) -> None:
        job = RunningJob(claimed)
        with self._cond:
            self._free -= 1
            self._claimed += 1
            self._leases[job.id] = job
        executor.running[job.id] = job
        try:
            prepared = Prepared(job, self.worker_id)
        except Exception as exc:  # noqa: BLE001 - a job that cannot even be decoded fails, the others run
            self._job_done(job, executor.terminal_outcome(job, exc))
            return
        job.prepared = prepared
        if prepared.failure is None and prepared.task.isolated:
            job.isolated = True  # sync or async, it runs in a child forked from a job thread
        if prepared.failure is not None:
            self._job_done(job, prepared.failure)
        elif prepared.is_async and not job.isolated:
            job.future = asyncio.run_coroutine_threadsafe(self._run_async(job, prepared), self._event_loop())
        else:
            job.started = math.inf  # its timeout clock starts when a thread runs it
            with self._cond:
                self._unstarted.add(job.id)
            self._runnable.put((job, prepared))

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=loop.run_forever, name="djj-asyncio", daemon=True)
            self._loop_thread.start()
            self._loop = loop
        return self._loop

    def _job_thread(self) -> None:
        """One of the ``threads`` job threads: run the claimed sync jobs, in order, until told to stop."""
        while (item := self._runnable.get()) is not _STOP:
            try:
                self._run_sync(*item)
            except Exception:  # noqa: BLE001 - a job thread never dies: the worker would lose a slot
                logger.exception("Worker %s: unexpected error in a job thread", self.worker_id)

    def _run_sync(self, job: RunningJob, prepared: Prepared) -> None:
        with self._cond:
            self._unstarted.discard(job.id)
            if self.stopping.is_set() or job.decided:
                # Claimed ahead but the worker is stopping: released with the rest, never run.
                self._free += 1
                self._cond.notify_all()
                return
            job.started = started = time.monotonic()
        if job.isolated:
            try:
                isolated = isolation.run_isolated(job, prepared, parent_pid=os.getpid(), abandoned=lambda: job.decided)
            except Exception as exc:  # noqa: BLE001 - e.g. fork failed (no memory): the attempt fails, the worker goes on
                isolated = executor.error_outcome(job, prepared, exc)
            if isolated is None:  # released or lease lost: no outcome
                self._free_slot()
            else:
                self._job_done(job, isolated)
            return
        try:
            outcome = executor.run_sync(job, prepared)
        except BaseException as exc:  # noqa: BLE001 - e.g. SystemExit raised by a job
            outcome = prepared.outcome_for_error(job, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        self._avg_run += (time.monotonic() - started - self._avg_run) * 0.1
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
                try:
                    self._settle(batch)
                except Exception:  # noqa: BLE001 - never let the completer die
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
                except Exception as exc:  # noqa: BLE001 - retried, see below
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
                    self._outage.failed("settling jobs", exc, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
            faults.point("after_settle")
            with self._cond:
                for (job, _), code in zip(items, codes):
                    self._leases.pop(job.id, None)
                    executor.running.pop(job.id, None)
                    if code == ScriptCode.NOT_OWNER:
                        logger.warning("Job %s: lease lost, outcome dropped (another worker owns it now)", job.id)
                self.processed += sum(1 for code in codes if code)  # 0: given up
                self._settles += 1
                self._cond.notify_all()

    def _forget(self, jobs: Any) -> None:
        """Stop renewing ``jobs``' leases (recovery hands them to another run)."""
        with self._cond:
            for job in jobs:
                self._leases.pop(job.id, None)
                executor.running.pop(job.id, None)

    # -- heartbeat, timeouts, recovery ----------------------------------------------------

    def _heartbeat_loop(self) -> None:
        next_renew = next_recover = next_beat = next_memory = 0.0
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
                    self._recover()
                    reached = True
                if now >= next_beat:
                    next_beat = now + 5.0
                    self._beat()
                    reached = True
                if reached:
                    self._outage.ok()
            except Exception as exc:  # noqa: BLE001 - never let the heartbeat die
                self._outage.failed("renewing leases", exc, TICK)
            if os.getppid() != self._ppid and not self.fast.is_set():
                self._parent_gone()

    def _recover(self) -> None:
        for queue in self.queues:
            result = self.engine.recover(queue)
            for job_id, what, cid in result.jobs:
                extra = {"action": f"job_{what}", "job_id": job_id, "queue": queue, "correlation_id": cid,
                         "worker": self.worker_id}
                if what == "stalled":
                    logger.warning("Job %s stalled (its worker stopped renewing the lease): back to waiting", job_id, extra=extra)
                elif what == "failed":
                    logger.error("Job %s failed: its worker was lost too many times (worker_lost)", job_id, extra=extra)
                else:
                    logger.info("Job %s cancelled: its worker was lost after a cancel request", job_id, extra=extra)

    def _enforce_timeouts(self, now: float) -> None:
        expired: list[RunningJob] = []
        with self._cond:
            for job in self._leases.values():
                if (
                    job.timeout and not job.decided and now - job.started > job.timeout
                    and job.future is None and not job.isolated  # those stop themselves
                ):
                    job.decided = True
                    expired.append(job)
        for job in expired:
            self._done.put((job, executor.timeout_outcome(job, job.prepared)))
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
        with self._cond:
            for job in self._leases.values():
                by_queue[job.queue].append((job.id, job.claimed.token))
        for queue, leases in by_queue.items():
            lost, cancel = self.engine.renew(queue, leases, lease_ms=self.lease_ms)
            faults.point("after_renew")
            with self._cond:
                for job_id in lost:
                    # Another run owns the job now: stop renewing, drop this run's outcome.
                    job = self._leases.pop(job_id, None)
                    if job is not None:
                        if not job.decided:
                            logger.warning("Job %s: lease lost, its outcome will be dropped", job_id)
                        job.decided = True
                    executor.running.pop(job_id, None)
            for job_id in cancel:
                job = self._leases.get(job_id)
                if job is not None and not job.cancel_event.is_set():
                    job.cancel_event.set()
                    if job.future is not None:
                        job.future.cancel()
        return bool(by_queue)

    def _beat(self) -> None:
        with self._cond:
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


def quiet_django_task_logging() -> None:
    """Disconnect django.tasks' own "Task ... state=..." log receivers in a worker process.

    The executor logs every outcome itself (with duration, attempt and traceback), so
    Django's receivers would log each job twice and cost a fifth of a no-op job's CPU.
    The django.tasks signals are still sent to every other receiver.
    """
    from django.tasks import signals

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
