"""Huey's side of ``python -m bench --peers``: the same job bodies as ``bench.jobs``.

Fire-and-forget: ``results=False`` (no result is stored). The consumers are started by
``bench.peers`` as ``huey_consumer bench.peer_huey.huey -w 8 -k thread`` (one per process).
"""

from __future__ import annotations

import os
import time

from huey import RedisHuey

from bench.counter import COUNTER_KEY, LATENCY_KEY, raw_redis

huey = RedisHuey("djj-bench", url=os.environ.get("DJJ_BENCH_REDIS_URL", "redis://127.0.0.1:1/0"), results=False)


@huey.task()
def incr() -> None:
    """One Redis INCR: the job every library runs in the comparison."""
    raw_redis().incr(COUNTER_KEY)


@huey.task()
def stamp(enqueued_ns: int) -> None:
    """Record how long after ``enqueued_ns`` this job started."""
    raw_redis().rpush(LATENCY_KEY, time.time_ns() - enqueued_ns)
