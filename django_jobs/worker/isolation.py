"""Run one job in a process forked for it (``@job(isolated=True)``).

A thread cannot be stopped, a process can: the job thread of the worker forks a child that
runs the job (:func:`django_jobs.worker.executor.run_sync`, so the correlation id, logging,
middleware and signals work as usual, inside the child) and writes its :class:`Outcome` back
through a pipe. The thread waits for it and SIGKILLs the child when the job passes its
timeout, when a cancel is requested, or when the worker gives the job up (released at
shutdown, lease lost). A child that dies without an answer (segfault, ``os._exit``, the OOM
killer) fails the attempt with :class:`~django_jobs.exceptions.JobCrashed`; attempts left
retry it as usual.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from django import db

from django_jobs.engine.queue import Outcome
from django_jobs.exceptions import Cancel, JobCrashed
from django_jobs.worker import executor
from django_jobs.worker.executor import Prepared, RunningJob

logger = logging.getLogger("django_jobs.worker")

#: How often the waiting thread checks the timeout, cancel requests and releases, seconds.
POLL = 0.05
#: Bytes of the length that starts the child's answer.
HEADER = 8
#: Exit status of a child that could not report an outcome (its own error is on stderr).
CHILD_ERROR = 70


def _ignore(signum: int, frame: Any) -> None:
    """SIGTERM and SIGINT in the child: the worker decides (a Python handler, reset by ``exec``)."""


def describe_status(status: int) -> str:
    """Say how a process ended, from its ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        hint = " (often the out-of-memory killer)" if sig == signal.SIGKILL else ""
        return f"killed by signal {name}{hint}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def run_isolated(job: RunningJob, prepared: Prepared, *, parent_pid: int, abandoned: Callable[[], bool]) -> Outcome | None:
    """Run ``job`` in a forked child and return its outcome (None when ``abandoned()`` became true).

    ``parent_pid`` is the worker process (the child exits at once if it is gone).
    """
    from django_jobs.lifeline import libc as _libc

    _libc()  # loaded here, once: loading it in every child costs more than the fork
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # Python warns about fork() in a process with threads: the child only runs the job
        # (and logging re-creates its locks after a fork); see docs/workers.md.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(job, prepared, write_fd, parent_pid)  # never returns
    os.close(write_fd)
    job.child_pid = pid
    # The end of the child is told by its pid (a pidfd, or waitpid polling), never by EOF on the
    # pipe: a child another job thread forks between our pipe() and close(write_fd) holds a
    # copy of the write end for as long as it runs.
    pidfd = _pidfd_open(pid)
    chunks: list[bytes] = []
    stopped_for = ""
    status: int | None = None
    try:
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        while True:
            if job.timeout and time.monotonic() - job.started >= job.timeout:
                stopped_for = "timeout"
            elif job.cancel_event.is_set():
                stopped_for = "cancel"
            elif abandoned():
                stopped_for = "abandoned"
            if stopped_for:
                kill(pid)
                break
            events = poller.poll(POLL * 1000)
            exited = pidfd < 0
            for fd, _ in events:
                if fd == read_fd:
                    data = os.read(read_fd, 1 << 16)
                    if data:
                        chunks.append(data)
                    else:  # EOF: every copy of the write end is closed
                        poller.unregister(read_fd)
                elif fd == pidfd:
                    exited = True
            if _complete(chunks):
                break
            if exited:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    chunks.extend(_drain(read_fd))
                    break
    finally:
        os.close(read_fd)
        if pidfd >= 0:
            os.close(pidfd)
        job.child_pid = 0
        if status is None:
            _, status = os.waitpid(pid, 0)  # it answered (and is exiting) or was killed
    if stopped_for == "abandoned":
        return None
    if stopped_for == "timeout":
        logger.warning("Job %s %s passed its timeout of %s s: its isolated process %d was killed", job.name, job.id, job.timeout, pid,
                       extra={"action": "job_timeout", "job_id": job.id, "queue": job.queue})
        return executor.timeout_outcome(job, prepared)
    if stopped_for == "cancel":
        return executor.error_outcome(job, prepared, Cancel(f"Job {job.name!r} was cancelled while running; its isolated process was killed."))
    outcome = _parse(b"".join(chunks))
    if outcome is None:
        exc = JobCrashed(f"The isolated process {pid} running job {job.name!r} died before returning: {describe_status(status)}.")
        return executor.error_outcome(job, prepared, exc)
    return outcome


def kill(pid: int) -> None:
    """SIGKILL an isolated job's child (gone already: nothing to do)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pidfd_open(pid: int) -> int:
    """A file descriptor that becomes readable when ``pid`` exits (Linux >= 5.3), else -1."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def _drain(fd: int) -> list[bytes]:
    """Read what is left in the pipe without waiting for an EOF that may never come."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return chunks


def _complete(chunks: list[bytes]) -> bool:
    """True once the whole message (8-byte length, then JSON) has arrived."""
    size = sum(map(len, chunks))
    if size < HEADER:
        return False
    head = b"".join(chunks)[:HEADER] if len(chunks[0]) < HEADER else chunks[0][:HEADER]
    return size >= HEADER + int.from_bytes(head, "big")


def _parse(data: bytes) -> Outcome | None:
    if len(data) < HEADER or len(data) < HEADER + int.from_bytes(data[:HEADER], "big"):
        return None  # no answer, or cut short by a crash while writing
    try:
        fields = json.loads(data[HEADER:])
        return Outcome(*fields)
    except (ValueError, TypeError):
        return None


def _child(job: RunningJob, prepared: Prepared, write_fd: int, parent_pid: int) -> None:
    """Run the job in the forked child, write its outcome, exit (never returns)."""
    code = CHILD_ERROR
    try:
        from django_jobs.lifeline import die_with_parent

        signal.set_wakeup_fd(-1)  # the wake-up pipe belongs to the worker
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore)
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        die_with_parent(signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(CHILD_ERROR)
        # The job thread's database connection belongs to the worker: drop it unclosed (closing
        # would end the worker's session); the job opens its own.
        for conn in db.connections.all(initialized_only=True):
            conn.connection = None
        outcome = executor.run_sync(job, prepared)
        body = json.dumps([outcome.id, outcome.token, outcome.kind, outcome.value, outcome.delay_ms, outcome.keep_ms]).encode()
        view = memoryview(len(body).to_bytes(HEADER, "big") + body)
        while view:
            view = view[os.write(write_fd, view) :]
        code = 0
    except BaseException:  # noqa: BLE001 - reported; the worker fails the attempt with JobCrashed
        traceback.print_exc()
    finally:
        try:  # os._exit() skips the flush of what the job printed
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
