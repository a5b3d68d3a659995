"""Test-only crash points in the job protocol of a worker process.

The fault tests (``tests/chaos/test_protocol_crashes.py``) make a worker process die at an
exact step of the protocol, the way a power cut or ``kill -9`` would, and check that
nothing is lost. The worker calls ``faults.point(step)`` at each step; :data:`point` is a
module-level no-op unless a test installed a crash hook with :func:`install` at process
start-up (the chaos tests do it from their settings module, ``tests/chaos/fault_settings.py``).
Nothing is read from the environment here: outside those tests a step costs one call of a
function that returns at once.

The crash is :func:`os._exit`: no ``finally`` blocks, no release, no flushed outcomes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["EXIT_CODE", "POINTS", "install", "installed", "point", "uninstall"]

#: Steps :func:`point` is called at, in protocol order.
POINTS = (
    "after_fetch",  # jobs were claimed by fetch, before any of them runs
    "before_settle",  # jobs ran, before their outcomes are written
    "after_settle",  # outcomes were written, before the next fetch
    "after_renew",  # leases were extended, before the worker looks at the reply
    "after_deliver",  # the flow relay delivered an outbox entry, before it acknowledges it
)
#: Exit code of a crashed worker process.
EXIT_CODE = 71


def _off(name: str) -> None:
    """No crash hook installed: every step returns at once."""


#: Called by the worker at each step of :data:`POINTS`; replaced by :func:`install`.
point: Callable[[str], None] = _off


def install(at: str, *, once: str | None = None) -> None:
    """Crash this process (and the processes it forks) when the worker reaches step ``at``.

    ``once``: optional path of a flag file. Then only the first process that reaches the
    step crashes: it creates the file (``O_EXCL``) and writes its pid in it just before dying,
    so the supervisor's replacement process and the other workers run normally. Without it
    every process crashes at every pass of the step.

    Raises:
        ValueError: ``at`` is not one of :data:`POINTS`.
    """
    global point
    if at not in POINTS:
        raise ValueError(f"The fault point is {at!r}; it must be one of: {', '.join(POINTS)}.")

    def crash(name: str) -> None:
        if name != at:
            return
        if once:
            try:
                fd = os.open(once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                uninstall()  # another process already crashed here
                return
            os.write(fd, f"{os.getpid()}\n".encode())  # which process crashed, for the test
            os.close(fd)
        os._exit(EXIT_CODE)

    point = crash


def uninstall() -> None:
    """Remove the crash hook: :data:`point` is a no-op again."""
    global point
    point = _off


def installed() -> bool:
    """Return True when a crash hook is installed in this process."""
    return point is not _off
