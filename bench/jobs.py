"""The benchmark's jobs: a no-op, a 10 ms sleep, and a start-time stamp for latency."""

from __future__ import annotations

import os
import threading
import time

import redis

from django_jobs import job

#: Redis list the ``stamp`` job appends ``start_ns - enqueued_ns`` to.
LATENCY_KEY = "bench:latency"

_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    """Return a raw client of the benchmark's Redis (one per process, made on first use)."""
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(os.environ["DJJ_BENCH_REDIS_URL"])
        return _client


@job
def noop() -> None:
    """Do nothing: measures the framework's own cost per job."""


@job
def sleep10() -> None:
    """Sleep 10 ms: an I/O-bound job."""
    time.sleep(0.010)


@job
def stamp(enqueued_ns: int) -> None:
    """Record how long after ``enqueued_ns`` (the caller's time.time_ns()) this job started."""
    started_ns = time.time_ns()
    _redis().rpush(LATENCY_KEY, started_ns - enqueued_ns)
