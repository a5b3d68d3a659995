"""A self-pipe that wakes a process's main loop: from signal handlers and from other threads.

Signal handlers do nothing but let :func:`signal.set_wakeup_fd` write the signal number into
the pipe, so no lock is ever taken inside a handler; the main loop reads the numbers back
with :meth:`WakeupPipe.wait` and acts on them in ordinary code. Other threads call
:meth:`WakeupPipe.wake` to make the main loop look around.
"""

from __future__ import annotations

import os
import select
import signal
import threading

#: The byte :meth:`WakeupPipe.wake` writes (0 is no signal number).
WAKE = 0


class WakeupPipe:
    """A non-blocking pipe; the write end may receive the process's signal numbers."""

    def __init__(self) -> None:
        self._r = self._w = -1
        self._saved_wakeup_fd: int | None = None
        # wake() writes under it: a closed descriptor's number may already belong to another file.
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._r >= 0

    def open(self) -> None:
        """Create the pipe (no-op when it is open)."""
        with self._lock:
            if self._r < 0:
                self._r, self._w = os.pipe()
                for fd in (self._r, self._w):
                    os.set_blocking(fd, False)

    def route_signals(self) -> None:
        """Have Python write every handled signal's number into the pipe (main thread only)."""
        self.open()
        self._saved_wakeup_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def unroute_signals(self) -> None:
        """Give the wake-up fd back to whoever had it before :meth:`route_signals`."""
        if self._saved_wakeup_fd is not None:
            signal.set_wakeup_fd(self._saved_wakeup_fd)
            self._saved_wakeup_fd = None

    def close(self) -> None:
        """Close both ends (a forked child calls it too, after ``signal.set_wakeup_fd(-1)``)."""
        with self._lock:
            fds, self._r, self._w = (self._r, self._w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def wake(self) -> None:
        """Wake the main loop (from any thread, not from a signal handler)."""
        with self._lock:
            if self._w < 0:
                return
            try:
                os.write(self._w, bytes([WAKE]))
            except BlockingIOError:
                pass  # full: a wake-up is pending anyway

    def wait(self, timeout: float | None) -> list[int]:
        """Block until something was written or ``timeout`` seconds pass; return the signal numbers read."""
        ready, _, _ = select.select([self._r], [], [], None if timeout is None else max(timeout, 0.0))
        if not ready:
            return []
        try:
            data = os.read(self._r, 256)
        except BlockingIOError:
            return []
        return [signum for signum in data if signum != WAKE]
