"""Jobs used by the tests in tests/chaos: each run is written to the ledger file.

A run writes ``start`` when it begins and ``end`` when it returns, so a test can tell a
job that was interrupted (a ``start`` without an ``end``) from one that ran twice.
"""

from __future__ import annotations

import time

from django_jobs import job
from tests.testapp.jobs import ledger


@job
def quick(tag: str) -> str:
    """Record one run of ``tag`` and return at once."""
    ledger("end", tag)
    return tag


@job
def slow(tag: str, seconds: float) -> str:
    """Record the start, sleep ``seconds``, record the end."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag


@job
async def slow_async(tag: str, seconds: float) -> str:
    """The async twin of :func:`slow`, run on the worker's event loop."""
    import asyncio

    ledger("start", tag)
    await asyncio.sleep(seconds)
    ledger("end", tag)
    return tag


@job(timeout=0.3)
def overrun(tag: str, seconds: float) -> str:
    """Sleep past the 0.3 s timeout: the worker fails it while its thread keeps sleeping."""
    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return tag


@job
def blocked_signals() -> list[int]:
    """Return the signals blocked in the thread running the job (inherited by its subprocesses)."""
    import signal

    return sorted(int(sig) for sig in signal.pthread_sigmask(signal.SIG_BLOCK, []))


@job
def slow_pid(tag: str, seconds: float) -> int:
    """Like :func:`slow`, returning the pid of the process that ran it."""
    import os

    ledger("start", tag)
    time.sleep(seconds)
    ledger("end", tag)
    return os.getpid()


@job
def poison(tag: str) -> None:
    """Kill the process that runs it, every time (a segfaulting C extension, an OOM kill...)."""
    import os
    import signal

    ledger("start", tag)
    os.kill(os.getpid(), signal.SIGKILL)


@job
def timed(tag: str, seconds: float) -> str:
    """Like :func:`slow`, with the wall-clock time (``time.time()``) of the start and the end."""
    ledger("start", tag, repr(time.time()))
    time.sleep(seconds)
    ledger("end", tag, repr(time.time()))
    return tag
