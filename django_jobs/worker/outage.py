"""How a worker process reports Redis outages, and its memory use."""

from __future__ import annotations

import logging
import os
import threading
import time

from django_jobs.exceptions import RedisUnavailable

logger = logging.getLogger("django_jobs.worker")

#: While Redis stays unreachable, repeat the warning at most this often, seconds.
OUTAGE_LOG_EVERY = 30.0


def rss_mb() -> float:
    """Return this process' resident memory in MB (Linux: now; elsewhere: the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class Outage:
    """Log that Redis cannot be reached once, then at most every :data:`OUTAGE_LOG_EVERY` s, and when it is back."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._since: float | None = None
        self._logged = 0.0

    def failed(self, doing: str, exc: BaseException, retry_in: float) -> None:
        now = time.monotonic()
        with self._lock:
            first = self._since is None
            if first:
                self._since = now
            log = first or now - self._logged >= OUTAGE_LOG_EVERY
            if log:
                self._logged = now
        if not log:
            return
        if isinstance(exc, RedisUnavailable):
            logger.warning(
                "Worker %s cannot reach Redis while %s, retrying in %.1f s: %s", self.worker_id, doing, retry_in, exc,
                extra={"action": "redis_unavailable"},
            )
        else:
            # Engine calls that do not wrap connection errors yet land here too.
            logger.error(
                "Worker %s: error while %s, retrying in %.1f s: %r", self.worker_id, doing, retry_in, exc,
                exc_info=exc, extra={"action": "worker_error"},
            )

    def ok(self) -> None:
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            logger.warning(
                "Worker %s reached Redis again after %.1f s", self.worker_id, time.monotonic() - since,
                extra={"action": "redis_available"},
            )
