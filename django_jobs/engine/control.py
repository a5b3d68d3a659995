"""Queue control and worker presence: pause/resume, queue limits, heartbeats, the marker wait.

Queue limits (docs/flow-control.md): the settings give the defaults (passed to fetch);
overrides live in the queue's meta hash: ``rn``/``rp`` rate count and period ms (``rn`` 0 =
no limit), ``cc`` concurrency (0 = no limit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from django_jobs.engine.keys import restarts_key, workers_key
from django_jobs.engine.runner import MAX_BLOCK, ScriptRunner

#: A worker whose heartbeat is older than this many seconds is no longer listed.
WORKER_TTL = 60.0


class Control(ScriptRunner):
    """Pause, limits, worker heartbeats and the blocking wait for work."""

    # -- pause ----------------------------------------------------------------------------

    def is_paused(self, queue: str) -> bool:
        """Return True when ``queue`` is paused."""
        return bool(self._call(self.client.hget, self.keys(queue).meta, "paused") == "1")

    def pause(self, queue: str) -> None:
        """Stop workers taking jobs from ``queue`` (enqueue keeps working)."""
        self._call(self.client.hset, self.keys(queue).meta, "paused", "1")

    def resume(self, queue: str) -> None:
        """Let workers take jobs from ``queue`` again."""
        self._write_meta(queue, drop=("paused",))

    def _write_meta(self, queue: str, *, fields: dict[str, int] | None = None, drop: Sequence[str] = ()) -> None:
        """Change the meta hash of ``queue`` and wake a worker, in one MULTI."""
        k = self.keys(queue)

        def write() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                if drop:
                    pipe.hdel(k.meta, *drop)
                if fields:
                    pipe.hset(k.meta, mapping=dict[Any, Any](fields))
                # A resumed queue, or a raised or lifted limit, may let held jobs start now.
                pipe.rpush(k.marker, "1")
                pipe.ltrim(k.marker, 0, 0)
                pipe.execute()

        self._call(write)

    # -- queue limits (django_jobs/limits.py) ---------------------------------------------

    def set_queue_limits(self, queue: str, *, rate: Any = None, concurrency: Any = None) -> None:
        """Override the limits of ``queue`` in Redis for every worker.

        ``rate`` is a :class:`~django_jobs.rates.Rate`, ``concurrency`` an int; ``None``
        lifts the limit; :data:`~django_jobs.rates.UNSET` leaves it as it is.
        """
        from django_jobs.rates import UNSET

        fields: dict[str, int] = {}
        if rate is not UNSET:
            fields.update(rn=0, rp=1000) if rate is None else fields.update(rn=rate.count, rp=rate.period_ms)
        if concurrency is not UNSET:
            fields["cc"] = 0 if concurrency is None else int(concurrency)
        self._write_meta(queue, fields=fields)

    def reset_queue_limits(self, queue: str) -> None:
        """Drop the run-time limit overrides of ``queue`` (the settings apply again)."""
        self._write_meta(queue, drop=("rn", "rp", "cc"))

    def queue_limits(self, queue: str) -> tuple[Any, int | None, bool]:
        """Return ``(rate or None, concurrency or None, overridden)`` in force on ``queue``."""
        from django_jobs.rates import Rate

        rn, rp, cc = self._call(self.client.hmget, self.keys(queue).meta, "rn", "rp", "cc")
        d_rn, d_rp, d_cc = self._default_limits(queue)
        overridden = rn is not None or cc is not None
        count, period = (int(rn), int(rp or 1000)) if rn is not None else (d_rn, d_rp)
        conc = int(cc) if cc is not None else d_cc
        return (Rate(count, period) if count > 0 else None), (conc or None), overridden

    # -- workers --------------------------------------------------------------------------

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a job may be ready on one of ``queues`` or ``timeout`` seconds pass."""
        markers = [self.keys(q).marker for q in queues]
        timeout = min(MAX_BLOCK, max(0.01, round(timeout, 3)))
        if self._waiter is not None:  # markers on several slots: one blocked thread per queue
            return self._waiter.wait(dict(zip(queues, markers, strict=True)), timeout, block=MAX_BLOCK)
        return self._call(self.blocking_client().blpop, markers, timeout=timeout) is not None

    def heartbeat(self, worker_id: str, info: dict[str, Any]) -> None:
        """Record that ``worker_id`` is alive (for the admin and ``jobs workers``).

        ``info`` is stored as JSON with the time of this beat added as ``beat``.
        """
        record = json.dumps({**info, "beat": time.time()})
        self._call(self.client.hset, workers_key(self.prefix), worker_id, record)

    def forget_worker(self, worker_id: str) -> None:
        """Remove ``worker_id`` from the live worker list."""
        self._call(self.client.hdel, workers_key(self.prefix), worker_id)

    def workers(self, *, ttl: float = WORKER_TTL) -> dict[str, dict[str, Any]]:
        """Return the heartbeat records of live workers; records older than ``ttl`` s are deleted."""
        raw = self._call(self.client.hgetall, workers_key(self.prefix))
        live: dict[str, dict[str, Any]] = {}
        stale: list[str] = []
        now = time.time()
        for worker_id, record in raw.items():
            try:
                info = json.loads(record)
                fresh = now - float(info.get("beat", 0)) <= ttl
            except (ValueError, TypeError, AttributeError):
                fresh = False
            if fresh:
                live[worker_id] = info
            else:
                stale.append(worker_id)
        if stale:
            self._call(self.client.hdel, workers_key(self.prefix), *stale)
        return live

    #: Restarts kept per host, and for how long after the last one (seconds).
    RESTARTS_KEPT, RESTARTS_TTL = 50, 7 * 86400

    def record_restart(self, host: str, entry: dict[str, Any]) -> None:
        """Remember that a worker process of ``host`` exited and was replaced (for the admin's Workers page).

        ``entry`` (pid, exit code, reason, uptime) is stored as JSON with the time ``at`` added;
        the newest :attr:`RESTARTS_KEPT` are kept.
        """
        key = restarts_key(self.prefix, host)

        def write() -> None:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.lpush(key, json.dumps({**entry, "at": time.time()}))
                pipe.ltrim(key, 0, self.RESTARTS_KEPT - 1)
                pipe.expire(key, self.RESTARTS_TTL)
                pipe.execute()

        self._call(write)

    def restarts(self, host: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Return the newest ``limit`` restarts :meth:`record_restart` recorded for ``host``."""
        found = []
        for raw in self._call(self.client.lrange, restarts_key(self.prefix, host), 0, limit - 1):
            try:
                found.append(json.loads(raw))
            except ValueError:
                continue
        return found

    # -- tests ----------------------------------------------------------------------------

    def drop_all(self) -> int:
        """Delete every key under this engine's prefix (test clean-up); returns how many."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + ":*"

        def drop() -> int:
            deleted = 0
            batch: list[str] = []
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 500:
                    deleted += self.client.unlink(*batch)
                    batch = []
            if batch:
                deleted += self.client.unlink(*batch)
            return deleted

        return int(self._call(drop))
