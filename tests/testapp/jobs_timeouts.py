"""Jobs used by tests/chaos/test_timeouts.py and test_recycling.py; each run is written to the ledger."""

from __future__ import annotations

import logging
import os
import time

from django_jobs import job
from django_jobs.correlation import get_correlation_id
from tests.testapp.jobs import ledger

logger = logging.getLogger(__name__)

#: Memory a :func:`hog` keeps alive in its worker process (so the process' RSS stays up).
_held: list[bytes] = []


@job(timeout=0.5, attempts=2)
def stuck(tag: str, seconds: float) -> str:
    """Sleep past the 0.5 s timeout in a thread (which cannot be stopped); two attempts."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag


@job
def steady(tag: str, seconds: float) -> int:
    """Record the start, sleep ``seconds``, record the end; return the pid."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return os.getpid()


@job(isolated=True, timeout=0.5, attempts=2)
def isolated_stuck(tag: str, seconds: float) -> str:
    """Sleep past the 0.5 s timeout in an isolated process (killed at the timeout); two attempts."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag


@job(isolated=True, attempts=2)
def isolated_crash(tag: str) -> None:
    """Exit the isolated process without returning, at every attempt (a segfault, an OOM kill...)."""
    ledger("start", tag)
    os._exit(9)


@job(isolated=True, attempts=1)
def isolated_info(tag: str) -> dict[str, object]:
    """Log a line and return what the isolated process sees: its pid, its parent, the correlation id."""
    ledger("end", tag)
    logger.warning("isolated job %s says hello", tag)
    print(f"isolated job {tag} prints")  # block-buffered stdout: flushed before the child exits
    return {"pid": os.getpid(), "ppid": os.getppid(), "correlation_id": get_correlation_id()}


@job(isolated=True, attempts=1)
def isolated_fail(tag: str) -> None:
    """Raise inside the isolated process: the exception comes back as the job's error."""
    ledger("end", tag)
    raise KeyError(tag)


@job
def hog(tag: str, mb: int) -> int:
    """Keep ``mb`` MB alive in the worker process (touched, so it is resident); return the pid."""
    _held.append(b"\x01" * (mb * 2**20))
    ledger("end", tag)
    return os.getpid()


@job(timeout=0.5)
async def async_stuck(tag: str, seconds: float) -> str:
    """Await past the 0.5 s timeout: its task is cancelled, the worker goes on."""
    import asyncio

    ledger("start", tag)
    await asyncio.sleep(seconds)
    ledger("end", tag)
    return tag


@job(isolated=True)
def isolated_sleeper(tag: str, seconds: float) -> str:
    """Sleep in an isolated process, with no timeout (stopped by a cancel, a release or a kill)."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag


@job
def echo(value: int) -> int:
    """Return ``value`` (a no-op job, to compare with :func:`isolated_echo`)."""
    return value


@job(isolated=True)
def isolated_echo(value: int) -> int:
    """Return ``value`` from an isolated process (measures the cost of a fork per attempt)."""
    return value


@job(isolated=True)
def isolated_signal(tag: str, how: str) -> None:
    """Die in the isolated process: ``"segfault"`` reads address 0, ``"oom"`` is SIGKILL (what the OOM killer sends)."""
    import ctypes
    import signal

    ledger("start", tag)
    if how == "segfault":
        ctypes.string_at(0)
    os.kill(os.getpid(), signal.SIGKILL)
