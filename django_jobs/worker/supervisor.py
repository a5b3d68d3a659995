"""The supervisor behind ``manage.py runworkers``: forks worker processes and keeps them alive.

The first SIGTERM or SIGINT is forwarded to the workers as SIGTERM (finish running jobs
within the grace period); a second one is forwarded as SIGUSR1 (release running jobs at once).
A worker still alive ``ESCALATE_AFTER`` seconds past the grace period gets SIGUSR1, and
SIGKILL ``KILL_AFTER`` seconds past it, so the supervisor always exits. It exits when every
worker has exited: 0 after a clean shutdown, 1 when a worker failed.

Signal handlers only wake the main loop (through :func:`signal.set_wakeup_fd`); the loop
reaps children on SIGCHLD and restarts the ones that died, later and later when they keep
dying at start-up.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field

from django import db

from django_jobs.scheduler import Scheduler
from django_jobs.worker.process import SIGNALS, run_worker_process
from django_jobs.worker.state import EXIT_RECYCLED, EXIT_TIMEOUT
from django_jobs.worker.wakeup import WakeupPipe

logger = logging.getLogger("django_jobs.worker")

#: A worker that dies sooner than this after starting counts as a crash loop (restart delayed).
MIN_UPTIME = 5.0
#: Seconds past the grace period after which live workers are told to release their jobs now
#: (a worker releases them by itself at the end of the grace period; this is for a stuck one).
ESCALATE_AFTER = 2.0
#: Seconds past the grace period after which live workers are killed (their jobs are recovered
#: when their leases expire), so the supervisor exits before a platform's own SIGKILL.
KILL_AFTER = 5.0
#: Longest sleep of the main loop when nothing is due, seconds (it wakes on every signal).
IDLE_WAIT = 60.0
#: Longest wait, seconds, for the scheduler thread to reach a safe point before a fork.
FORK_GATE_TIMEOUT = 5.0
#: Child index of the database mirror process (worker processes are 0 .. processes - 1).
MIRROR_INDEX = -1
#: Signals routed to the main loop: the ones workers handle, plus SIGCHLD.
_WATCHED = (*SIGNALS, signal.SIGCHLD)


@dataclass(slots=True)
class Child:
    index: int
    pid: int
    started: float = field(default_factory=time.monotonic)
    failures: int = 0


@dataclass(slots=True)
class _Restart:
    index: int
    failures: int
    due: float


def _record_restart(pid: int, code: int, uptime: float, why: str) -> None:
    """Tell the admin (through the engine) that a worker process exited and why; never fails the supervisor."""
    try:
        from django_jobs.engine import get_engine

        get_engine().record_restart(socket.gethostname(), {"pid": pid, "code": code, "why": why, "uptime": round(uptime, 1)})
    except Exception:  # Redis down: the log line above is the record
        logger.debug("Could not record the restart of worker process %d", pid, exc_info=True)


def _ignore(signum: int, frame: object) -> None:
    """Python-level handler of the watched signals (the wake-up pipe does the work)."""


class Supervisor:
    """Start ``processes`` workers for ``queues`` with ``threads`` slots each; restart dead ones."""

    def __init__(
        self, *, queues: list[str], processes: int, threads: int, grace: float, burst: bool = False,
        max_jobs: int | None = None, max_memory_mb: int | None = None, mirror: bool = False,
    ) -> None:
        self.queues = queues
        self.max_jobs = max_jobs
        self.max_memory_mb = max_memory_mb
        self.mirror = mirror and not burst  # the database mirror runs in its own child (index MIRROR_INDEX)
        self.processes = processes
        self.threads = threads
        self.grace = grace
        self.burst = burst
        self.children: dict[int, Child] = {}
        self.restarts: list[_Restart] = []
        self.signals = 0
        self.stopping = False
        self.exit_code = 0
        self._stop_at = 0.0
        self._escalated = False
        self._killed = False
        self._pipe = WakeupPipe()
        self.scheduler: Scheduler | None = None

    # -- children -------------------------------------------------------------------------

    def _spawn(self, index: int, failures: int = 0) -> None:
        db.connections.close_all()  # never share a DB socket with a child
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # Signals wait (blocked) until the child has installed its own handling, so one sent
        # right after the fork never runs the supervisor's handlers in the child.
        signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        # The scheduler thread holds ``busy`` whenever it is not sleeping: taking it here means
        # the child never inherits a lock (Redis pool, logging) that thread held half-way. The
        # wait is bounded so a scheduler stuck on an unreachable Redis cannot hold up restarts
        # (the child builds its own engine and logging re-creates its locks after a fork).
        gate = self.scheduler.busy if self.scheduler is not None else None
        gated = gate is not None and gate.acquire(timeout=FORK_GATE_TIMEOUT)
        try:
            try:
                with warnings.catch_warnings():
                    # Python warns about fork() in a process with threads; the gate is the answer.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    # The child's collector never visits what exists now, so the pages of the
                    # modules, jobs and settings it inherits stay shared with the supervisor
                    # (copy-on-write) instead of being written by the child's first collections.
                    gc.freeze()
                    pid = os.fork()
                    if pid:
                        gc.unfreeze()  # the supervisor itself keeps collecting as before
            finally:
                if gated and gate is not None:
                    gate.release()
            if pid == 0:
                self._run_child(parent, index)  # never returns
            self.children[pid] = Child(index=index, pid=pid, failures=failures)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)

    def _run_child(self, parent: int, index: int = 0) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            self._pipe.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # The signal mask is inherited by whatever a job runs: leave only the worker's
            # own signals blocked, until it handles them (see run_worker_process).
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
            self.children.clear()
            if index == MIRROR_INDEX:
                from django_jobs.mirror import run_mirror_process

                code = run_mirror_process(parent_pid=parent)
            else:
                code = run_worker_process(
                    queues=self.queues, threads=self.threads, grace=self.grace, burst=self.burst, parent_pid=parent,
                    max_jobs=self.max_jobs, max_memory_mb=self.max_memory_mb,
                )
        except BaseException:  # report, then leave without running the parent's atexit hooks
            logger.exception("Worker process %d crashed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)

    def _reap(self) -> None:
        """Collect exited children; schedule restarts (unless stopping)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping or (self.burst and code == 0):
                if code not in (0, -signal.SIGTERM, EXIT_RECYCLED, EXIT_TIMEOUT):
                    logger.error("Worker process %d exited with %s while stopping", pid, code)
                    self.exit_code = 1
                continue
            uptime = time.monotonic() - child.started
            if code in (EXIT_RECYCLED, EXIT_TIMEOUT):
                # Planned exits (the worker logged why): replaced at once, never a crash loop.
                why = "recycled" if code == EXIT_RECYCLED else "exited after a job passed its timeout"
                level = logging.INFO if code == EXIT_RECYCLED else logging.WARNING
                logger.log(level, "Worker process %d %s after %.1f s; starting a replacement", pid, why, uptime,
                           extra={"action": "worker_replaced"})
                self.restarts.append(_Restart(child.index, 0, time.monotonic()))
                _record_restart(pid, code, uptime, why)
                continue
            failures = child.failures + 1 if uptime < MIN_UPTIME else 0
            delay = min(30.0, 0.5 * 2 ** min(failures, 6)) if failures else 0.0
            logger.error(
                "Worker process %d exited with %s after %.1f s; restarting%s",
                pid, code, uptime, f" in {delay:.1f} s" if delay else "",
                extra={"action": "worker_died"},
            )
            self.restarts.append(_Restart(child.index, failures, time.monotonic() + delay))
            _record_restart(pid, code, uptime, f"killed by signal {-code}" if code < 0 else f"crashed (exit code {code})")

    def _signal_children(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # -- signals --------------------------------------------------------------------------

    def install_signals(self) -> None:
        """Take over SIGTERM, SIGINT, SIGUSR1/2 and SIGCHLD (main thread; :meth:`run` does it if needed).

        A signal that arrives before :meth:`run` waits in a pipe and is acted on once the
        workers are started.
        """
        if self._pipe.is_open:
            return
        self._pipe.route_signals()
        for sig in _WATCHED:
            signal.signal(sig, _ignore)

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal arrives or ``timeout`` passes; act on the signals."""
        for signum in self._pipe.wait(timeout):
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._on_stop_signal(signum)

    def _on_stop_signal(self, signum: int) -> None:
        self.signals += 1
        if self.signals == 1:
            self.stopping = True
            self._stop_at = time.monotonic()
            self.restarts.clear()
            logger.info(
                "Stopping %d worker process(es) (%s): finishing running jobs within %.0f s",
                len(self.children), signal.Signals(signum).name, self.grace, extra={"action": "supervisor_stopping"},
            )
            self._signal_children(signal.SIGTERM)
            if self.scheduler is not None:
                self.scheduler.stop()  # give up the lead: another supervisor takes it at once
        else:
            logger.warning("Second signal: workers release running jobs now", extra={"action": "supervisor_stopping_now"})
            self._signal_children(signal.SIGUSR1)

    # -- main loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until every worker has exited after a signal (or, in burst mode, on its own)."""
        self.install_signals()
        if not self.burst:
            # Created before the first fork so the workers share its leader flag (is_leader()),
            # started after it so the first children fork from a single-threaded process.
            self.scheduler = Scheduler()
        try:
            for index in range(self.processes):
                self._spawn(index)
            if self.mirror:
                self._spawn(MIRROR_INDEX)
            if self.scheduler is not None:
                self.scheduler.start()
            while True:
                self._reap()
                now = time.monotonic()
                timeout = IDLE_WAIT
                if self.stopping:
                    if not self.children:
                        break
                    timeout = self._escalate(now)
                else:
                    for restart in [r for r in self.restarts if r.due <= now]:
                        self.restarts.remove(restart)
                        self._spawn(restart.index, restart.failures)
                    if self.burst and not self.children and not self.restarts:
                        break
                    if self.restarts:
                        timeout = min(r.due for r in self.restarts) - now
                self._wait(timeout)
        finally:
            if self.scheduler is not None:
                self.scheduler.stop()
            self._pipe.unroute_signals()
            self._pipe.close()
        return self.exit_code

    def _escalate(self, now: float) -> float:
        """Hurry workers that outlive the grace period; return how long to wait before the next step."""
        release_at = self._stop_at + self.grace + ESCALATE_AFTER
        kill_at = self._stop_at + self.grace + KILL_AFTER
        if now >= kill_at and not self._killed:
            self._killed = True
            logger.error("Killing %d worker process(es) that did not stop in time", len(self.children))
            self._signal_children(signal.SIGKILL)
            self.exit_code = 1
        elif now >= release_at and not self._escalated:
            self._escalated = True
            logger.warning("%d worker process(es) still running past the grace period: releasing their jobs now",
                           len(self.children))
            self._signal_children(signal.SIGUSR1)
        if now < release_at:
            return release_at - now
        if now < kill_at:
            return kill_at - now
        return 1.0
