"""The benchmark's jobs: a no-op, a 10 ms sleep, one Redis INCR, and a start-time stamp for latency.

``incr`` and ``stamp`` are also defined, with the same bodies, for the peers of
``python -m bench --peers`` (``bench/peer_huey.py``, ``bench/peer_dramatiq.py``,
``bench/peer_celery.py``); they use :func:`raw_redis` too.
"""

from __future__ import annotations

import time

from bench.counter import COUNTER_KEY, LATENCY_KEY, raw_redis
from django_jobs import job

__all__ = ["COUNTER_KEY", "LATENCY_KEY", "incr", "noop", "raw_redis", "sleep10", "stamp"]


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
    raw_redis().rpush(LATENCY_KEY, started_ns - enqueued_ns)


@job
def incr() -> None:
    """One Redis INCR: the job every library runs in ``python -m bench --peers``."""
    raw_redis().incr(COUNTER_KEY)
