"""One log line per Redis outage for the long-running loops (scheduler, mirror), not a traceback per retry.

Workers do the same in :mod:`django_jobs.worker.process`. An error that is not "Redis cannot be
reached" is still logged with its traceback (the first, the 10th, then every 100th in a row).
"""

from __future__ import annotations

import logging
import time


def is_outage(exc: BaseException) -> bool:
    """Return True when ``exc`` means Redis cannot be reached (wrapped or raw redis-py error)."""
    from django_jobs.engine.connection import is_connection_error

    return is_connection_error(exc)


class OutageLog:
    """Count a loop's failures in a row and log them: one line per outage, tracebacks for the rest."""

    def __init__(self, logger: logging.Logger, who: str) -> None:
        self.logger = logger
        self.who = who
        self.errors = 0
        self._down_since: float | None = None

    def failed(self, exc: BaseException, retry_in: float) -> None:
        """Record one failed step (call from the ``except`` block)."""
        self.errors += 1
        if is_outage(exc):
            if self._down_since is None:
                self._down_since = time.monotonic()
                self.logger.warning(
                    "%s cannot reach Redis, retrying every few seconds until it answers: %s", self.who, exc,
                    extra={"action": "redis_unavailable"},
                )
            return
        if self.errors in (1, 10) or self.errors % 100 == 0:
            self.logger.error("%s step failed (%d in a row); retrying in %.1f s", self.who, self.errors, retry_in,
                              exc_info=exc, extra={"action": "step_failed"})

    def ok(self) -> None:
        """Record a step that worked (logs once when Redis is back)."""
        if self._down_since is not None:
            self.logger.warning("%s reached Redis again after %.1f s", self.who, time.monotonic() - self._down_since,
                                extra={"action": "redis_available"})
            self._down_since = None
        self.errors = 0
