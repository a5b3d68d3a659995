"""The supervisor behind ``manage.py runworkers``: forks worker processes and keeps them alive.

SIGTERM/SIGINT are forwarded to the workers as SIGTERM (graceful); a second signal is
forwarded again (the workers then release their jobs at once). The supervisor exits when
every worker has exited, 0 after a clean shutdown.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from django import db

from django_jobs.worker.process import run_worker_process

logger = logging.getLogger("django_jobs.worker")

#: A worker that dies sooner than this after starting counts as a crash loop (restart delayed).
MIN_UPTIME = 5.0


@dataclass(slots=True)
class Child:
    index: int
    pid: int
    started: float = field(default_factory=time.monotonic)
    failures: int = 0


class Supervisor:
    """Start ``processes`` workers for ``queues`` with ``threads`` slots each; restart dead ones."""

    def __init__(self, *, queues: list[str], processes: int, threads: int, grace: float, burst: bool = False) -> None:
        self.queues = queues
        self.processes = processes
        self.threads = threads
        self.grace = grace
        self.burst = burst
        self.children: dict[int, Child] = {}
        self.signals = 0
        self.stopping = False

    def _spawn(self, index: int, failures: int = 0) -> None:
        db.connections.close_all()  # never share a DB socket with a child
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                code = run_worker_process(queues=self.queues, threads=self.threads, grace=self.grace, burst=self.burst)
            except BaseException:  # noqa: BLE001 - report, then leave without running parent atexit hooks
                logger.exception("Worker process crashed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = Child(index=index, pid=pid, failures=failures)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Run until every worker has exited after a signal (or, in burst mode, on its own)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.processes):
            self._spawn(index)
        exit_code = 0
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            child = self.children.pop(pid, None)
            if child is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping or (self.burst and code == 0):
                if code not in (0, -signal.SIGTERM):
                    exit_code = 1
                continue
            uptime = time.monotonic() - child.started
            failures = child.failures + 1 if uptime < MIN_UPTIME else 0
            delay = min(30.0, 0.5 * 2 ** min(failures, 6)) if failures else 0.0
            logger.error(
                "Worker process %d exited with %s after %.1f s; restarting%s",
                pid, code, uptime, f" in {delay:.1f} s" if delay else "",
            )
            if delay:
                end = time.monotonic() + delay
                while time.monotonic() < end and not self.stopping:
                    time.sleep(0.1)
                if self.stopping:
                    continue
            self._spawn(child.index, failures)
        return exit_code
