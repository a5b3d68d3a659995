"""Dramatiq's side of ``python -m bench --peers``: the same job bodies as ``bench.jobs``.

Dramatiq's default middleware and no result backend (fire-and-forget). The workers are started
by ``bench.peers`` as ``dramatiq bench.peer_dramatiq --processes 2 --threads 8``.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.counter import COUNTER_KEY, LATENCY_KEY, raw_redis

broker = RedisBroker(url=os.environ.get("DJJ_BENCH_REDIS_URL", "redis://127.0.0.1:1/0"), namespace="djj-bench")
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def incr() -> None:
    """One Redis INCR: the job every library runs in the comparison."""
    raw_redis().incr(COUNTER_KEY)


@dramatiq.actor(max_retries=0)
def stamp(enqueued_ns: int) -> None:
    """Record how long after ``enqueued_ns`` this job started."""
    raw_redis().rpush(LATENCY_KEY, time.time_ns() - enqueued_ns)
