"""Celery's side of ``python -m bench --peers``: the same job bodies as ``bench.jobs``.

Fire-and-forget: no result backend, ``task_ignore_result``. The workers are started by
``bench.peers`` as two ``celery -A bench.peer_celery worker --pool threads --concurrency 8``
processes, without gossip, mingle and heartbeats (cluster chatter, not per-job work).
"""

from __future__ import annotations

import os
import time

from celery import Celery

from bench.counter import COUNTER_KEY, LATENCY_KEY, raw_redis

app = Celery("djj_bench", broker=os.environ.get("DJJ_BENCH_REDIS_URL", "redis://127.0.0.1:1/0"))
app.conf.update(
    task_ignore_result=True,
    result_backend=None,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)


@app.task(name="bench.incr")
def incr() -> None:
    """One Redis INCR: the job every library runs in the comparison."""
    raw_redis().incr(COUNTER_KEY)


@app.task(name="bench.stamp")
def stamp(enqueued_ns: int) -> None:
    """Record how long after ``enqueued_ns`` this job started."""
    raw_redis().rpush(LATENCY_KEY, time.time_ns() - enqueued_ns)
