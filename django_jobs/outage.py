"""One log line per Redis outage for the long-running loops (workers, scheduler, mirror), not a traceback per retry.

An error that is not "Redis cannot be reached" is still logged with its traceback (the first, the
10th, then every 100th in a row). One :class:`OutageLog` may be shared by threads (a worker's
fetch, heartbeat and settle loops share one).
"""

from __future__ import annotations

import logging
import threading
import time


def is_outage(exc: BaseException) -> bool:
    """Return True when ``exc`` means Redis cannot be reached (wrapped or raw redis-py error)."""
    from django_jobs.engine.connection import is_connection_error

    return is_connection_error(exc)


class OutageLog:
    """Count a loop's failures in a row and log them: one line per outage, tracebacks for the rest.

    ``repeat_every`` (seconds) repeats the outage line while Redis stays away (workers: 30 s);
    ``None`` logs it once per outage.
    """

    def __init__(self, logger: logging.Logger, who: str, *, repeat_every: float | None = None) -> None:
        self.logger = logger
        self.who = who
        self.repeat_every = repeat_every
        self.errors = 0
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._logged = 0.0

    def failed(self, exc: BaseException, retry_in: float, doing: str = "") -> None:
        """Record one failed step (call from the ``except`` block); ``doing`` says what failed ("fetching jobs")."""
        now = time.monotonic()
        while_doing = f" while {doing}" if doing else ""
        if is_outage(exc):
            with self._lock:
                self.errors += 1
                first = self._down_since is None
                if first:
                    self._down_since = now
                log = first or (self.repeat_every is not None and now - self._logged >= self.repeat_every)
                if log:
                    self._logged = now
            if log:
                self.logger.warning(
                    "%s cannot reach Redis%s, retrying in %.1f s until it answers: %s", self.who, while_doing, retry_in, exc,
                    extra={"action": "redis_unavailable"},
                )
            return
        with self._lock:
            self.errors += 1
            errors = self.errors
        if errors in (1, 10) or errors % 100 == 0:
            self.logger.error("%s step failed%s (%d in a row); retrying in %.1f s", self.who, while_doing, errors, retry_in,
                              exc_info=exc, extra={"action": "step_failed"})

    def ok(self) -> None:
        """Record a step that worked (logs once when Redis is back)."""
        if self._down_since is None and not self.errors:  # the common case, without the lock
            return
        with self._lock:
            since, self._down_since = self._down_since, None
            self.errors = 0
        if since is not None:
            self.logger.warning("%s reached Redis again after %.1f s", self.who, time.monotonic() - since,
                                extra={"action": "redis_available"})
