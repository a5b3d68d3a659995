"""What the engine does differently on a Redis Cluster: script calls and the idle wait.

Every key of a queue carries the queue's hash tag, so every script call touches one slot and
redis-py's :class:`~redis.cluster.RedisCluster` routes it by its first key (following MOVED,
ASK and failovers). What differs from one server:

- :func:`run_script`: EVALSHA through the cluster client (not on a thread-owned connection),
  EVAL when the node has not cached the script (a promoted replica, a new node).
- :class:`ClusterWaiter`: a worker serving queues on several slots cannot BLPOP their markers
  in one command (CROSSSLOT). One thread per queue blocks on that queue's marker (no CPU while
  idle) and latches a wake-up flag; :meth:`ClusterWaiter.wait` sleeps on a condition until a
  flag of one of its queues is up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from django_jobs.exceptions import RedisUnavailable

logger = logging.getLogger("django_jobs.engine")

#: Seconds a marker thread waits after a connection error before it blocks again.
ERROR_PAUSE = 0.5


def run_script(client: Any, script: Any, keys: Sequence[str], args: Sequence[Any], target: str) -> Any:
    """Call a registered script on the node that serves ``keys[0]``.

    A connection error (a primary that died) is retried by RedisCluster itself, which refreshes
    its slot map each time; the scripts make a replayed call have the effect of one.

    Raises:
        RedisUnavailable: the cluster did not answer after RedisCluster's retries.
    """
    if not keys:
        raise ValueError("On a Redis Cluster every script call needs a key: it routes the call to a slot.")
    try:
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # EVAL sends the source and caches it on that node (a replica promoted by a failover
            # has an empty script cache).
            return client.eval(script.script, len(keys), *keys, *args)
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError) as exc:
        raise RedisUnavailable(f"Cannot reach Redis at {target}: {exc}") from exc


#: Seconds between two reads of the events streams while the mirror waits on a cluster.
STREAM_POLL = 0.5


def wait_streams(client: RedisCluster, streams: dict[str, str], timeout: float) -> bool:
    """Wait until one of ``streams`` ({key: last id}) has a newer entry; False after ``timeout`` s.

    One XREAD cannot name streams on several slots, so this reads each stream without
    blocking (one pipelined round trip, split per node by RedisCluster) every STREAM_POLL s.
    """
    deadline = time.monotonic() + timeout
    while True:
        with client.pipeline(transaction=False) as pipe:  # type: ignore[no-untyped-call]
            for key, tip in streams.items():
                pipe.xread({key: tip}, count=1)
            if any(pipe.execute()):
                return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(STREAM_POLL, left))


class ClusterWaiter:
    """Blocking idle wait on the markers of queues that live on different slots (see module doc)."""

    def __init__(self, client_factory: Any) -> None:
        #: Returns the blocking RedisCluster client (socket timeout longer than a wait).
        self._client_factory = client_factory
        self._cond = threading.Condition()
        self._woken: set[str] = set()
        self._threads: dict[str, threading.Thread] = {}
        self._stopped = False
        self._block = 30.0

    def wait(self, markers: dict[str, str], timeout: float, *, block: float) -> bool:
        """Wait until a job may be ready on one of ``markers`` ({queue: marker key}) or ``timeout`` s pass.

        Consumes the wake-up flags of those queues; returns True if one was up.
        """
        self._block = block
        for queue, marker in markers.items():
            if queue not in self._threads:
                self._start(queue, marker)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hit = self._woken.intersection(markers)
                if hit:
                    self._woken.difference_update(hit)
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self._stopped:
                    return False
                self._cond.wait(left)

    def _start(self, queue: str, marker: str) -> None:
        thread = threading.Thread(
            target=self._watch, args=(queue, marker), name=f"djj-marker-{queue}", daemon=True
        )
        self._threads[queue] = thread
        thread.start()

    def _watch(self, queue: str, marker: str) -> None:
        """Block on one queue's marker for ever, latching a wake-up for each pop."""
        while not self._stopped:
            try:
                popped = self._client_factory().blpop([marker], timeout=self._block)
            except Exception as exc:  # noqa: BLE001 - a marker thread must not die (RedisClusterException is no RedisError)
                if self._stopped:
                    return
                logger.debug("marker wait on %s failed (%s); retrying", queue, exc)
                popped = True  # wake the worker: its own calls see the error, or the new primary
                time.sleep(ERROR_PAUSE)
            if popped:
                with self._cond:
                    self._woken.add(queue)
                    self._cond.notify_all()

    def stop(self) -> None:
        """Let the marker threads end (each ends when its current wait returns)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
