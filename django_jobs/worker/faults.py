"""Test-only crash points in the job protocol of a worker process.

The fault tests (``tests/chaos/test_protocol_crashes.py``) make a worker process die at an
exact step of the protocol, the way a power cut or ``kill -9`` would, and check that
nothing is lost. A step is armed with environment variables read once, at the first
:func:`point` call of the process:

``DJJ_FAULT_AT``
    The step to crash at, one of :data:`POINTS`.
``DJJ_FAULT_ONCE``
    Optional path of a flag file. When set, only the first process that reaches the step
    crashes: it creates the file (``O_EXCL``) and writes its pid in it just before dying, so the supervisor's
    replacement process and the other workers run normally. Without it every process
    crashes at every pass of the step.

With ``DJJ_FAULT_AT`` unset (always, outside these tests) :func:`point` returns at once.
The crash is :func:`os._exit`: no ``finally`` blocks, no release, no flushed outcomes.
"""

from __future__ import annotations

import os

#: Steps :func:`point` is called at, in protocol order.
POINTS = (
    "after_fetch",  # jobs were claimed by fetch, before any of them runs
    "before_settle",  # jobs ran, before their outcomes are written
    "after_settle",  # outcomes were written, before the next fetch
    "after_renew",  # leases were extended, before the worker looks at the reply
)
#: Exit code of a crashed worker process.
EXIT_CODE = 71

_UNREAD = object()
_armed: object = _UNREAD  # the armed step (str), None when disarmed, _UNREAD before the first call


def _read() -> str | None:
    at = os.environ.get("DJJ_FAULT_AT") or None
    if at is not None and at not in POINTS:
        raise ValueError(f"DJJ_FAULT_AT is {at!r}; it must be one of: {', '.join(POINTS)}.")
    return at


def point(name: str) -> None:
    """Crash this process now if ``name`` is the armed step (a no-op otherwise)."""
    global _armed
    if _armed is _UNREAD:
        _armed = _read()
    if _armed is None or _armed != name:
        return
    once = os.environ.get("DJJ_FAULT_ONCE")
    if once:
        try:
            fd = os.open(once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            _armed = None  # another process already crashed here
            return
        os.write(fd, f"{os.getpid()}\n".encode())  # which process crashed, for the test
        os.close(fd)
    os._exit(EXIT_CODE)


def reset() -> None:
    """Read the environment again at the next :func:`point` call (for tests)."""
    global _armed
    _armed = _UNREAD
