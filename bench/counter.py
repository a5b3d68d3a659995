"""The Redis keys and the raw client the benchmark's job bodies use, for every library.

No Django import: the peers' worker processes (``bench/peer_*.py``) import this too.
"""

from __future__ import annotations

import os
import threading

import redis

#: Redis list the ``stamp`` jobs append ``start_ns - enqueued_ns`` to.
LATENCY_KEY = "bench:latency"
#: Redis counter the ``incr`` jobs increment (``--peers``: every library's job does this INCR).
COUNTER_KEY = "bench:counter"

_client: redis.Redis | None = None
_lock = threading.Lock()


def raw_redis() -> redis.Redis:
    """Return a raw client of the benchmark's Redis (one per process, made on first use)."""
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(os.environ["DJJ_BENCH_REDIS_URL"])
        return _client
