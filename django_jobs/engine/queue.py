"""The engine: every read and write of job state in Redis goes through :class:`Engine`.

Each state transition is one Lua script call (see ``lua/``). Methods take plain values
and return plain values; the job API (:mod:`django_jobs.tasks`) builds on them.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from django_jobs.conf import JobsSettings
from django_jobs.engine.cluster import ClusterWaiter, run_script, wait_streams
from django_jobs.engine.connection import build_client
from django_jobs.engine.replicas import ENQUEUE_SCRIPTS, replica_acks, replica_wait
from django_jobs.engine.keys import QueueKeys, workers_key
from django_jobs.engine.scripts import SCRIPT_NAMES, script_source
from django_jobs.engine.topology import blocking_twin, describe, is_cluster
from django_jobs.exceptions import EngineError, RedisOutOfMemory, RedisUnavailable

#: Attempts of a script call on a connection error before RedisUnavailable (scripts are replay-safe).
SCRIPT_RETRIES = 3
#: Longest single blocking wait on the marker keys, seconds.
MAX_BLOCK = 30.0
#: A worker whose heartbeat is older than this many seconds is no longer listed.
WORKER_TTL = 60.0

#: How many due scheduled jobs one fetch promotes at most.
PROMOTE_LIMIT = 1000
#: How many expired leases one recovery call handles at most.
RECOVER_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job about to be enqueued."""

    id: str
    data: str
    priority: int = 0
    run_at_ms: int = 0
    delay_ms: int = 0
    correlation_id: str = ""
    parent_id: str = ""


@dataclass(frozen=True, slots=True)
class Guard:
    """The unique key and the limit key of a job being enqueued (docs/flow-control.md)."""

    #: The unique key ("": none).
    key: str = ""
    #: "k" keep the guarded job (deduplicate) | "r" replace its arguments and run time (debounce).
    mode: str = "k"
    #: "s" guarded while waiting or scheduled | "f" also while active.
    until: str = "s"
    #: Throttle window, ms: the key stays taken this long after the enqueue (0: none).
    window_ms: int = 0
    #: The limit key ("": none), its concurrency (0: none) and rate (count 0: none).
    limit_key: str = ""
    limit_concurrency: int = 0
    limit_rate: int = 0
    limit_period_ms: int = 1000


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this worker holds a lease on."""

    queue: str
    id: str
    token: str
    data: str
    attempt: int
    enqueued_ms: int
    correlation_id: str
    parent_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of running a claimed job, to settle in Redis.

    ``kind`` is ``"c"`` complete, ``"r"`` retry, ``"f"`` fail or ``"x"`` cancelled.
    """

    id: str
    token: str
    kind: str
    value: str = ""
    delay_ms: int = 0
    keep_ms: int = 0


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch call returned."""

    jobs: list[Claimed]
    next_due_ms: int
    paused: bool
    #: The count was cut to ``start_now`` because the queue has a concurrency limit in force.
    limited: bool = False


class Recovery(tuple[int, int]):
    """``(recovered, failed)`` counts of one recovery call, with ``jobs``: ``[(job_id, what, correlation_id)]``."""

    jobs: list[tuple[str, str, str]]

    def __new__(cls, recovered: int, failed: int, jobs: list[tuple[str, str, str]]) -> Recovery:
        self = super().__new__(cls, (recovered, failed))
        self.jobs = jobs
        return self


class _OwnConnection:
    """A connection owned by one thread (and one process); closed when the thread ends."""

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pid = os.getpid()

    def close(self) -> None:
        if self.pid == os.getpid():
            self.conn.disconnect()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class Engine:
    """Redis access for one process: a client, the key layout and the registered scripts."""

    def __init__(self, settings: JobsSettings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.client = client if client is not None else build_client(settings)
        self._blocking: Any = None  # redis.Redis, or a RedisCluster on a cluster
        self._keys: dict[str, QueueKeys] = {}
        self._scripts = {name: self.client.register_script(script_source(name)) for name in SCRIPT_NAMES}
        self._lock = threading.Lock()
        self._lane = threading.local()
        self._owned: weakref.WeakSet[_OwnConnection] = weakref.WeakSet()
        self.maxlen = settings.events_maxlen
        self._limit_defaults: dict[str, tuple[int, int, int]] = {}
        #: A Redis Cluster client: script calls and idle waits go per slot (engine/cluster.py).
        self._cluster = is_cluster(self.client)
        self._waiter = ClusterWaiter(self.blocking_client) if self._cluster else None
        #: ENQUEUE_WAIT: (replicas, timeout ms) each enqueue waits for (docs/scaling.md), or None.
        self._enqueue_wait = settings.enqueue_wait

    # -- plumbing -------------------------------------------------------------------------

    def keys(self, queue: str) -> QueueKeys:
        """Return the key names of ``queue``."""
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys.build(self.prefix, queue)
        return keys

    @property
    def target(self) -> str:
        """A printable description of the Redis server (no password)."""
        return describe(self.client)

    def blocking_client(self) -> Any:
        """Return a client for blocking waits (its socket timeout outlasts any wait)."""
        with self._lock:
            if self._blocking is None:
                # Longer than any wait, so a connection that died silently is noticed.
                self._blocking = blocking_twin(self.client, MAX_BLOCK + 10)
            return self._blocking

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Call script ``name`` on this thread's own connection.

        The hot path: EVALSHA straight on a connection owned by the calling thread, with no
        pool checkout and no per-call wrappers. NOSCRIPT (cache flushed, failover) loads the
        script and calls again; a connection error reconnects and sends the call again,
        which the scripts make safe (replaying a request has the effect of once).
        """
        script = self._scripts[name]
        if self._cluster:
            try:
                return run_script(self.client, script, keys, args, self.target)
            except redis.ResponseError as exc:
                raise self._response_error(exc) from exc
        lane = self._lane
        pid = os.getpid()
        for attempt in range(SCRIPT_RETRIES + 1):
            own = getattr(lane, "own", None)
            if own is None or own.pid != pid:
                own = lane.own = _OwnConnection(self.client.connection_pool.make_connection())
                self._owned.add(own)
            conn = own.conn
            try:
                conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                try:
                    reply = conn.read_response()
                except redis.exceptions.NoScriptError:
                    # EVAL sends the source and caches it: unlike SCRIPT LOAD + EVALSHA, it cannot
                    # meet another flush in between (tests/chaos/test_redis_stalls.py).
                    conn.send_command("EVAL", script.script, len(keys), *keys, *args)
                    reply = conn.read_response()
                if self._enqueue_wait is not None and name in ENQUEUE_SCRIPTS:
                    replica_wait(conn, self._enqueue_wait)
                return reply
            except redis.ResponseError as exc:
                raise self._response_error(exc) from exc
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                conn.disconnect()
                if attempt == SCRIPT_RETRIES:
                    raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a plain client command, translating connection errors."""
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc
        except redis.ResponseError as exc:
            raise self._response_error(exc) from exc

    def _response_error(self, exc: redis.ResponseError) -> Exception:
        """Return the typed error for an error reply (the reply itself when it has none)."""
        if isinstance(exc, redis.exceptions.OutOfMemoryError) or str(exc).startswith("OOM"):
            return RedisOutOfMemory(
                f"Redis at {self.target} is out of memory (maxmemory reached, policy noeviction); "
                "nothing was written. Lower retention (KEEP_COMPLETED / KEEP_FAILED) or raise maxmemory."
            )
        return exc

    def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc

    def close(self) -> None:
        """Close this engine's connections, the script connections of every thread too."""
        for own in list(self._owned):
            own.close()
        if self._waiter is not None:
            self._waiter.stop()
        if self._cluster:  # a closed RedisCluster stays unusable; a closed Redis reconnects
            cast(Any, self.client).disconnect_connection_pools()
        else:
            self.client.close()
        if self._blocking is not None:
            if self._cluster:
                self._blocking.disconnect_connection_pools()  # ends the marker threads' waits
            else:
                self._blocking.close()

    # -- transitions ----------------------------------------------------------------------

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[int]:
        """Add jobs to ``queue`` in one call. Returns per job 1 waiting, 2 scheduled, 0 existed."""
        k = self.keys(queue)
        args: list[Any] = [k.job_prefix, self.maxlen]
        for j in jobs:
            args += [j.id, j.data, j.priority, j.run_at_ms, j.delay_ms, j.correlation_id, j.parent_id]
        return list(self._run("enqueue", (k.wait, k.scheduled, k.meta, k.events, k.marker), args))

    def enqueue_many(self, queue: str, jobs: Sequence[NewJob], *, chunk: int = 500) -> list[int]:
        """Add many jobs in one round trip: one script call per ``chunk`` jobs, pipelined.

        Each call is short, so Redis serves other clients between chunks.
        """
        if len(jobs) <= chunk:
            return self.enqueue(queue, jobs)
        k = self.keys(queue)
        args: list[Any] = []
        for j in jobs:
            args += [j.id, j.data, j.priority, j.run_at_ms, j.delay_ms, j.correlation_id, j.parent_id]
        return self._run_chunked(
            "enqueue", (k.wait, k.scheduled, k.meta, k.events, k.marker), (k.job_prefix, self.maxlen), args, width=7, chunk=chunk
        )

    def _run_chunked(
        self, name: str, keys: Sequence[str], head: Sequence[Any], items: Sequence[Any], *, width: int, chunk: int
    ) -> list[Any]:
        """Call script ``name`` once per ``chunk`` items, pipelined in one round trip; return the replies joined.

        ``items`` is flat, ``width`` values per item; each call gets ``head`` and then its items.
        One chunk is a plain :meth:`_run` call.
        """
        step = width * chunk
        if len(items) <= step or self._cluster:
            if self._cluster:  # one call per chunk (a cluster pipeline cannot carry script calls)
                return [r for start in range(0, len(items), step) for r in self._run(name, keys, (*head, *items[start : start + step]))]
            return list(self._run(name, keys, (*head, *items)))
        script = self._scripts[name]

        def send() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for start in range(0, len(items), step):
                    script(keys=list(keys), args=[*head, *items[start : start + step]], client=pipe)
                wait = self._enqueue_wait if name in ENQUEUE_SCRIPTS else None
                if wait is not None:
                    pipe.execute_command("WAIT", *wait)
                replies = list(pipe.execute())
                if wait is not None:
                    replica_acks(replies.pop(), wait)
                return replies

        return [reply for replies in self._call(send) for reply in replies]

    def enqueue_guarded(self, queue: str, jobs: Sequence[tuple[NewJob, Guard]]) -> list[tuple[int, str]]:
        """Add jobs that carry a unique key and/or a limit key in one call; per job ``(code, job id)``.

        Codes: 1 created waiting, 2 created scheduled, 0 id existed, 3 deduplicated, 4 replaced
        (the id is then the guarded job's; see enqueue_guarded.lua).
        """
        self._extra("enqueue_guarded")
        k = self.keys(queue)
        args: list[Any] = [k.job_prefix, self.maxlen, k.unique_prefix, k.limit_prefix]
        for j, u in jobs:
            args += [j.id, j.data, j.priority, j.run_at_ms, j.delay_ms, j.correlation_id, j.parent_id,
                     u.key, u.mode, u.until, u.window_ms,
                     u.limit_key, u.limit_concurrency, u.limit_rate, u.limit_period_ms]
        raw = self._run("enqueue_guarded", (k.wait, k.scheduled, k.meta, k.events, k.marker), args)
        return [(int(raw[i]), str(raw[i + 1])) for i in range(0, len(raw), 2)]

    def fetch(self, queue: str, count: int, *, lease_ms: int, worker_id: str, start_now: int | None = None) -> FetchResult:
        """Promote due jobs and claim up to ``count`` waiting jobs of ``queue``.

        ``start_now``: how many of them the caller can start at once (its free threads); a
        queue with a concurrency limit in force claims no more than that (see fetch.lua).
        """
        k = self.keys(queue)
        raw = self._run(
            "fetch",
            (k.wait, k.scheduled, k.active, k.meta, k.events, k.marker, k.rate),
            (k.job_prefix, self.maxlen, count, lease_ms, worker_id, PROMOTE_LIMIT, *self._default_limits(queue),
             *(() if start_now is None else (max(0, start_now),))),
        )
        jobs = [
            Claimed(queue, raw[i], str(raw[i + 1]), raw[i + 2], int(raw[i + 3]), int(raw[i + 4] or 0), raw[i + 5], raw[i + 6])
            for i in range(2, len(raw), 7)
        ]
        return FetchResult(jobs=jobs, next_due_ms=int(raw[0]), paused=raw[1] == 1, limited=raw[1] == 2)

    def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[int]:
        """Apply outcomes of active jobs in one call; one code per outcome (see settle.lua)."""
        k = self.keys(queue)
        c_age, c_count = self.settings.keep(queue, "COMPLETED")
        f_age, f_count = self.settings.keep(queue, "FAILED")
        args: list[Any] = [k.job_prefix, self.maxlen, int(c_age * 1000), c_count, int(f_age * 1000), f_count]
        for o in outcomes:
            args += [o.id, o.token, o.kind, o.value, o.delay_ms, o.keep_ms]
        return list(
            self._run(
                "settle",
                (k.active, k.wait, k.scheduled, k.completed, k.failed, k.cancelled, k.meta, k.events, k.marker),
                args,
            )
        )

    def renew(self, queue: str, leases: Iterable[tuple[str, str]], *, lease_ms: int) -> tuple[list[str], list[str]]:
        """Extend leases; return (lost job ids, job ids with a cancel request)."""
        k = self.keys(queue)
        args: list[Any] = [k.job_prefix, lease_ms]
        for job_id, token in leases:
            args += [job_id, token]
        lost, cancel = self._run("renew", (k.active,), args)
        return list(lost), list(cancel)

    def recover(self, queue: str, *, now_ms: int = 0, limit: int = RECOVER_LIMIT) -> Recovery:
        """Return expired leases to waiting; returns (recovered, failed as worker_lost).

        The result's ``jobs`` lists ``(job_id, what, correlation_id)`` for each job handled,
        ``what`` being ``"stalled"`` (back to waiting), ``"failed"`` or ``"cancelled"`` (a cancel
        was requested).
        """
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        recovered, failed, _cancelled, flat = self._run(
            "recover",
            (k.active, k.wait, k.failed, k.meta, k.events, k.marker, k.cancelled, k.scheduled),
            (k.job_prefix, self.maxlen, self.settings.max_recoveries, limit, int(f_age * 1000), now_ms),
        )
        return Recovery(int(recovered), int(failed), list(zip(flat[::3], flat[1::3], flat[2::3])))

    def release(self, queue: str, leases: Iterable[tuple[str, str]]) -> int:
        """Put unfinished active jobs back to waiting (shutdown); returns how many."""
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        args: list[Any] = [k.job_prefix, self.maxlen, int(f_age * 1000)]
        for job_id, token in leases:
            args += [job_id, token]
        return int(self._run("release", (k.active, k.wait, k.meta, k.events, k.marker, k.cancelled, k.scheduled), args))

    def cancel(self, queue: str, job_id: str) -> int:
        """Cancel a job: 1 cancelled, 2 cancel requested (running), 0 finished, -1 unknown."""
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        return int(
            self._run(
                "cancel",
                (k.wait, k.scheduled, k.cancelled, k.events, k.job(job_id)),
                (job_id, self.maxlen, int(f_age * 1000)),
            )
        )

    def cancel_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Cancel many jobs in one round trip: one ``cancel`` call per job, pipelined; codes as :meth:`cancel`."""
        if not job_ids:
            return []
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        script = self._scripts["cancel"]

        def send() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    script(keys=(k.wait, k.scheduled, k.cancelled, k.events, k.job(job_id)),
                           args=(job_id, self.maxlen, int(f_age * 1000)), client=pipe)
                return pipe.execute()

        return [int(code) for code in self._call(send)]

    # -- reads ----------------------------------------------------------------------------

    def get_job(self, queue: str, job_id: str) -> dict[str, str] | None:
        """Return the raw job hash, or None."""
        try:
            data = self.client.hgetall(self.keys(queue).job(job_id))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc
        return data or None

    def find_job(self, job_id: str, queues: Iterable[str]) -> tuple[str, dict[str, str]] | None:
        """Look ``job_id`` up in each of ``queues`` in one round trip."""
        queues = list(queues)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for q in queues:
                    pipe.hgetall(self.keys(q).job(job_id))
                found = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc
        for q, data in zip(queues, found):
            if data:
                return q, data
        return None

    def counts(self, queue: str) -> dict[str, int]:
        """Return the number of jobs in each state of ``queue``."""
        k = self.keys(queue)

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for name in QueueKeys.STATE_SETS:
                    pipe.zcard(getattr(k, name))
                return pipe.execute()

        values = self._call(read)
        names = ("waiting", "scheduled", "active", "completed", "failed", "cancelled", "waiting_children")
        return dict(zip(names, (int(v) for v in values)))

    def is_paused(self, queue: str) -> bool:
        """Return True when ``queue`` is paused."""
        return bool(self._call(self.client.hget, self.keys(queue).meta, "paused") == "1")

    def pause(self, queue: str) -> None:
        """Stop workers taking jobs from ``queue`` (enqueue keeps working)."""
        self._call(self.client.hset, self.keys(queue).meta, "paused", "1")

    def resume(self, queue: str) -> None:
        """Let workers take jobs from ``queue`` again."""
        k = self.keys(queue)

        def write() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hdel(k.meta, "paused")
                pipe.rpush(k.marker, "1")
                pipe.ltrim(k.marker, 0, 0)
                pipe.execute()

        self._call(write)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a job may be ready on one of ``queues`` or ``timeout`` seconds pass."""
        markers = [self.keys(q).marker for q in queues]
        timeout = min(MAX_BLOCK, max(0.01, round(timeout, 3)))
        if self._waiter is not None:  # markers on several slots: one blocked thread per queue
            return self._waiter.wait(dict(zip(queues, markers)), timeout, block=MAX_BLOCK)
        return self._call(self.blocking_client().blpop, markers, timeout=timeout) is not None

    # -- workers --------------------------------------------------------------------------

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

    # -- operations (manage.py jobs, django_jobs.testing) --------------------------------------

    #: The state ZSET attribute of :class:`QueueKeys` for each state.
    STATE_KEYS = {
        "waiting": "wait", "scheduled": "scheduled", "active": "active",
        "completed": "completed", "failed": "failed", "cancelled": "cancelled",
        "waiting_children": "waiting_children",
    }
    #: States ``purge`` may delete.
    PURGEABLE = ("completed", "failed", "cancelled")

    def _extra(self, name: str) -> None:
        """Register script ``name`` (one not in SCRIPT_NAMES) on first use."""
        if name not in self._scripts:
            with self._lock:
                if name not in self._scripts:
                    self._scripts[name] = self.client.register_script(script_source(name))

    def server_time_ms(self) -> int:
        """Return Redis' clock, ms."""
        seconds, micros = self._call(self.client.time)
        return int(seconds) * 1000 + int(micros) // 1000

    def claim(self, queue: str, job_id: str, *, lease_ms: int, worker_id: str) -> Claimed | None:
        """Claim job ``job_id`` now if it is waiting or scheduled (None otherwise).

        Raises:
            JobNotFound: no such job in ``queue``.
        """
        from django_jobs.engine.codes import raise_for_code

        self._extra("claim")
        k = self.keys(queue)
        raw = self._run(
            "claim",
            (k.wait, k.scheduled, k.active, k.meta, k.events, k.job(job_id)),
            (job_id, self.maxlen, lease_ms, worker_id),
        )
        if isinstance(raw, int):
            raise_for_code(raw, job_id)
            return None
        token, data, attempt, enqueued, cid, parent = raw
        return Claimed(queue, job_id, str(token), data, int(attempt), int(enqueued or 0), cid, parent)

    def list_jobs(self, queue: str, state: str, *, offset: int = 0, limit: int = 20) -> tuple[int, list[tuple[str, dict[str, str]]]]:
        """Return (total, page) of the jobs of ``queue`` in ``state``.

        The page holds ``(job id, job hash)`` pairs: waiting jobs in the order they will run,
        scheduled ones by due time, active ones by lease deadline, finished ones newest first.
        """
        key = getattr(self.keys(queue), self.STATE_KEYS[state])
        newest_first = state in self.PURGEABLE

        def read() -> tuple[int, list[str]]:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zrange(key, offset, offset + limit - 1, desc=newest_first)
                total, ids = pipe.execute()
            return int(total), list(ids)

        total, ids = self._call(read)
        if not ids:
            return total, []

        return total, list(zip(ids, self.get_jobs([(queue, job_id) for job_id in ids])))

    def retry(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Move failed or cancelled jobs back to waiting with their attempts reset.

        One code per id: 1 retried, 0 not failed or cancelled, -1 unknown, 2 not retried because
        another job now guards its unique key (see retry.lua). A retried job with a unique key
        takes the key back.
        """
        return self.retry_many(queue, job_ids)

    def finished_ids(self, queue: str, state: str, *, limit: int = 500) -> list[str]:
        """Return up to ``limit`` ids of the oldest jobs of ``queue`` in finished ``state``."""
        key = getattr(self.keys(queue), self.STATE_KEYS[state])
        return list(self._call(self.client.zrange, key, 0, limit - 1))

    def purge(self, queue: str, state: str, *, limit: int = 500) -> int:
        """Delete up to ``limit`` jobs of ``queue`` in ``state`` (completed, failed or cancelled).

        Returns how many were deleted; call again until it returns 0.
        """
        if state not in self.PURGEABLE:
            raise ValueError(f"Only finished jobs can be purged ({', '.join(self.PURGEABLE)}), not {state!r}.")
        self._extra("purge")
        k = self.keys(queue)
        return int(self._run("purge", (getattr(k, self.STATE_KEYS[state]),), (k.job_prefix, limit)))

    def oldest_waiting_age(self, queue: str) -> float | None:
        """Return how long the oldest waiting job of ``queue`` has waited, seconds (None: none).

        Within a priority the line is first in, first out, so the oldest job is the head of
        one priority's line: this reads the head of each priority present (one step each).
        """
        k = self.keys(queue)
        span = 2**44

        def heads() -> list[str]:
            found: list[str] = []
            low: float | str = "-inf"
            while len(found) <= 201:
                row = self.client.zrangebyscore(k.wait, low, "+inf", start=0, num=1, withscores=True)
                if not row:
                    break
                job_id, score = row[0]
                found.append(job_id)
                low = (int(score) // span + 1) * span
            return found

        ids = self._call(heads)
        if not ids:
            return None

        def enqueued() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(k.job(job_id), "e")
                return list(pipe.execute())

        times = [int(e) for e in self._call(enqueued) if e]
        if not times:
            return None
        return max(0.0, (self.server_time_ms() - min(times)) / 1000)

    def throughput(self, queue: str, *, seconds: float = 60.0) -> dict[str, int]:
        """Count ``completed``, ``failed`` and ``retrying`` events of the last ``seconds``.

        Read from the events stream by time (its ids are Redis ms), so the count stops at
        what the stream still holds (``EVENTS_MAXLEN``).
        """
        k = self.keys(queue)
        start = f"{self.server_time_ms() - int(seconds * 1000)}-0"
        counts = {"completed": 0, "failed": 0, "retrying": 0}
        while True:
            batch = self._call(self.client.xrange, k.events, start, "+", count=10_000)
            for _, fields in batch:
                event = fields.get("e")
                if event in counts:
                    counts[event] += 1
            if len(batch) < 10_000:
                return counts
            start = "(" + batch[-1][0]

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

    # -- cron: scheduler leader election and ticks (see django_jobs/scheduler.py) ----------
    # The keys share the hash tag "{cron}" so each script touches one Redis Cluster slot.
    # TODO: move the key names into engine/keys.py (only module that should format them).

    def cron_keys(self) -> tuple[str, str, str]:
        """Return the names of the leader lease, the epoch counter and the schedules' state hash."""
        base = f"{self.prefix}:{{cron}}:"
        return base + "leader", base + "epoch", base + "state"

    def _cron_run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        # The cron scripts are registered on first use, so the engine's start-up is unchanged.
        if name not in self._scripts:
            self._scripts[name] = self.client.register_script(script_source(name))
        return self._run(name, keys, args)

    def leader_acquire(self, holder: str, *, lease_ms: int) -> tuple[int, int, str]:
        """Try to become the scheduler leader; return (epoch or 0, Redis now ms, current leader value)."""
        leader, epoch, _ = self.cron_keys()
        got, now_ms, current = self._cron_run("leader_acquire", (leader, epoch), (holder, lease_ms))
        return int(got), int(now_ms), str(current or "")

    def leader_renew(self, token: str, *, lease_ms: int) -> tuple[bool, int]:
        """Extend the lease held as ``token`` ("<epoch>|<holder>"); ``lease_ms=0`` resigns.

        Returns (still the leader, Redis now ms).
        """
        leader, _, _ = self.cron_keys()
        ok, now_ms = self._cron_run("leader_renew", (leader,), (token, lease_ms))
        return bool(ok), int(now_ms)

    def leader(self) -> str:
        """Return the current leader value "<epoch>|<holder>" ('' when nobody leads)."""
        return str(self._call(self.client.get, self.cron_keys()[0]) or "")

    def cron_claim(self, token: str, name: str, slot_ms: int) -> int:
        """Claim tick ``slot_ms`` of schedule ``name``: 1 claimed, 0 fired already, -3 stale leader."""
        leader, _, state = self.cron_keys()
        return int(self._cron_run("cron_claim", (leader, state), (token, name, slot_ms)))

    def cron_done(self, name: str, slot_ms: int, job_id: str) -> int:
        """Record that the job of tick ``slot_ms`` of ``name`` is enqueued."""
        return int(self._cron_run("cron_done", (self.cron_keys()[2],), (name, slot_ms, job_id)))

    def cron_state(self) -> dict[str, str]:
        """Return the raw state hash of every schedule (see cron_claim.lua, cron_done.lua)."""
        return dict(self._call(self.client.hgetall, self.cron_keys()[2]))

    # -- flows (django_jobs/flows.py, lua/flow_enqueue.lua, lua/includes/flow.lua) ----------

    def enqueue_flow(self, jobs: Sequence[FlowJob]) -> int:
        """Create a whole flow in one script call: 1 created, 0 a job of it existed (nothing written).

        A flow may span queues: its script touches the keys of each, which needs a single
        Redis server. Against a Redis Cluster, a flow over several queues raises
        :class:`~django_jobs.exceptions.ConfigurationError` before anything is written.
        """
        if len({j.queue for j in jobs}) > 1 and self._is_cluster():
            from django_jobs.exceptions import ConfigurationError

            raise ConfigurationError(
                "This Redis is a Cluster: a flow over several queues "
                f"({', '.join(sorted({j.queue for j in jobs}))}) cannot be created atomically. "
                "Put the whole flow on one queue, or use a single Redis server."
            )
        self._extra("flow_enqueue")
        args: list[Any] = [self.maxlen]
        for j in jobs:
            n = j.job
            args += [
                self.keys(j.queue).base, n.id, n.data, n.priority, n.run_at_ms, n.delay_ms, n.correlation_id,
                n.parent_id, self.keys(j.parent_queue).base if j.parent_queue else "", j.policy, j.keep_ms,
                json.dumps([[self.keys(q).base, i, q, name] for q, i, name in j.children]) if j.children else "",
            ]
        # The script names its keys in ARGV; the one key routes the call to the flow's slot on a cluster.
        return int(self._run("flow_enqueue", (self.keys(jobs[0].queue).meta,), args))

    def _is_cluster(self) -> bool:
        """Return True on a Redis Cluster: configured as one, or a server that says it is a node (asked once)."""
        if self._cluster:
            return True
        cached = getattr(self, "_cluster_node", None)
        if cached is None:
            try:
                info = self._call(self.client.info, "cluster")
            except redis.ResponseError:  # INFO refused (ACL, renamed command): not a Cluster we can see
                info = {}
            cached = self._cluster_node = bool(int(info.get("cluster_enabled", 0) or 0))
        return cached

    def get_jobs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        """Return the raw hashes of ``(queue, job id)`` pairs in one round trip (``{}`` for a missing job)."""

        def read() -> list[dict[str, str]]:
            with self.client.pipeline(transaction=False) as pipe:
                for queue, job_id in pairs:
                    pipe.hgetall(self.keys(queue).job(job_id))
                return list(pipe.execute())

        return self._call(read) if pairs else []


    # -- the admin: bulk actions and schedule control (django_jobs/admin.py) -------------------

    #: Job ids per script call of a bulk action (each call stays short; Redis serves others between).
    BULK_CHUNK = 1000

    def _bulk(self, name: str, keys: Sequence[str], head: Sequence[Any], job_ids: Sequence[str]) -> list[int]:
        """Call script ``name`` once per :attr:`BULK_CHUNK` ids, pipelined: one round trip."""
        if not job_ids:
            return []
        self._extra(name)
        return [int(c) for c in self._run_chunked(name, keys, head, job_ids, width=1, chunk=self.BULK_CHUNK)]

    def retry_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Like :meth:`retry`, for any number of ids: one script call per 1,000, pipelined."""
        k = self.keys(queue)
        return self._bulk("retry", (k.wait, k.failed, k.cancelled, k.meta, k.events, k.marker), (k.job_prefix, self.maxlen), job_ids)

    def cancel_many(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Cancel many jobs of ``queue``; one code per id, as :meth:`cancel` (see cancel_many.lua)."""
        k = self.keys(queue)
        f_age, _ = self.settings.keep(queue, "FAILED")
        return self._bulk(
            "cancel_many", (k.wait, k.scheduled, k.cancelled, k.events), (k.job_prefix, self.maxlen, int(f_age * 1000)), job_ids
        )

    def delete_jobs(self, queue: str, job_ids: Sequence[str]) -> list[int]:
        """Delete jobs of ``queue`` that are not running; one code per id (see delete.lua).

        1 deleted, 0 not deleted (running, or an unfinished child of a flow: cancel it first),
        -1 unknown. Deleting a flow parent that waits for its children cancels them first.
        """
        k = self.keys(queue)
        return self._bulk(
            "delete", (k.wait, k.scheduled, k.completed, k.failed, k.cancelled, k.events, k.waiting_children),
            (k.job_prefix, self.maxlen), job_ids,
        )

    def cron_pause(self, name: str, paused: bool) -> bool:
        """Pause (``paused=True``) or resume schedule ``name`` for every supervisor.

        Ticks that fall while a schedule is paused are dropped (see cron_pause.lua). Returns
        False when the schedule was in that state already.
        """
        self._extra("cron_pause")
        return bool(self._run("cron_pause", (self.cron_keys()[2],), (name, "1" if paused else "0")))

    def cron_triggered(self, name: str, job_id: str) -> None:
        """Record that schedule ``name`` was triggered by hand as job ``job_id`` (for the admin)."""
        self._call(self.client.hset, self.cron_keys()[2], mapping={f"{name}:trig": job_id})

    def set_progress(self, queue: str, job_id: str, token: str, progress_json: str) -> int:
        """Record the progress of a running job (fenced by its lease token): 1, or -1 / -3 (see progress.lua)."""
        self._extra("progress")
        return int(self._run("progress", (self.keys(queue).job(job_id), self.keys(queue).events), (job_id, token, progress_json, self.maxlen)))

    # -- flow control: queue limits (django_jobs/limits.py, docs/flow-control.md) -----------
    # Settings give the defaults (passed to fetch); overrides live in the queue's meta hash:
    # 'rn'/'rp' rate count and period ms (rn 0 = no limit), 'cc' concurrency (0 = no limit).

    def _default_limits(self, queue: str) -> tuple[int, int, int]:
        """Return the settings' (rate count, rate period ms, concurrency) of ``queue``; 0 = none."""
        found = self._limit_defaults.get(queue)
        if found is None:
            options = self.settings.queues.get(queue, {})
            rate = options.get("RATE_LIMIT")
            count, period_ms = (rate.count, rate.period_ms) if rate is not None else (0, 1000)
            found = self._limit_defaults[queue] = (count, period_ms, int(options.get("CONCURRENCY") or 0))
        return found

    def set_queue_limits(self, queue: str, *, rate: Any = None, concurrency: Any = None) -> None:
        """Override the limits of ``queue`` in Redis for every worker.

        ``rate`` is a :class:`~django_jobs.limits.Rate`, ``concurrency`` an int; ``None``
        lifts the limit; :data:`~django_jobs.limits.UNSET` leaves it as it is.
        """
        from django_jobs.limits import UNSET

        k = self.keys(queue)
        fields: dict[str, int] = {}
        if rate is not UNSET:
            fields.update(rn=0, rp=1000) if rate is None else fields.update(rn=rate.count, rp=rate.period_ms)
        if concurrency is not UNSET:
            fields["cc"] = 0 if concurrency is None else int(concurrency)

        def write() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                if fields:
                    pipe.hset(k.meta, mapping=fields)
                # A raised or lifted limit may let held jobs start now: wake a worker.
                pipe.rpush(k.marker, "1")
                pipe.ltrim(k.marker, 0, 0)
                pipe.execute()

        self._call(write)

    def reset_queue_limits(self, queue: str) -> None:
        """Drop the run-time limit overrides of ``queue`` (the settings apply again)."""
        k = self.keys(queue)

        def write() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hdel(k.meta, "rn", "rp", "cc")
                pipe.rpush(k.marker, "1")
                pipe.ltrim(k.marker, 0, 0)
                pipe.execute()

        self._call(write)

    def queue_limits(self, queue: str) -> tuple[Any, int | None, bool]:
        """Return ``(rate or None, concurrency or None, overridden)`` in force on ``queue``."""
        from django_jobs.limits import Rate

        rn, rp, cc = self._call(self.client.hmget, self.keys(queue).meta, "rn", "rp", "cc")
        d_rn, d_rp, d_cc = self._default_limits(queue)
        overridden = rn is not None or cc is not None
        count, period = (int(rn), int(rp or 1000)) if rn is not None else (d_rn, d_rp)
        conc = int(cc) if cc is not None else d_cc
        return (Rate(count, period) if count > 0 else None), (conc or None), overridden

    # -- the database mirror (see django_jobs/mirror.py) -------------------------------------
    # The mirror follows each queue's events stream with a consumer group and reads the job
    # hashes for the current truth. None of this changes a job: plain stream and hash commands.

    def mirror_ensure_group(self, queue: str, group: str) -> bool:
        """Create consumer group ``group`` on the events stream of ``queue`` (from its start).

        Returns True when the group was created, False when it existed already.
        """
        try:
            self._call(self.client.xgroup_create, self.keys(queue).events, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    def mirror_read(self, queue: str, group: str, consumer: str, *, count: int) -> MirrorRead:
        """Read up to ``count`` new entries of ``queue``'s events for ``consumer`` of ``group``.

        One MULTI: the group's read count and the stream's added and kept counts are read
        with the entries, so :attr:`MirrorRead.gap` says exactly whether entries the group
        never saw were trimmed away (``MAXLEN``) before this read.

        Raises:
            MirrorGroupMissing: the group (or the stream) does not exist, e.g. after Redis lost its data.
        """
        key = self.keys(queue).events

        def read() -> list[Any]:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.execute_command("XINFO", "GROUPS", key)
                pipe.execute_command("XINFO", "STREAM", key)
                pipe.xreadgroup(group, consumer, {key: ">"}, count=count)
                return list(pipe.execute(raise_on_error=False))

        groups, stream, reply = self._call(read)
        for item in (groups, stream, reply):
            if isinstance(item, redis.ResponseError):
                if "NOGROUP" in str(item) or "no such key" in str(item):
                    raise MirrorGroupMissing(f"No mirror group on {key!r}.")
                raise self._response_error(item)
        mine = next((g for g in groups if g.get("name") == group), None)
        if mine is None:
            raise MirrorGroupMissing(f"No mirror group on {key!r}.")
        # Trimming removes the oldest entries and a group reads in order. Entries the group
        # never read are gone only when its last read entry is older than the oldest entry
        # left, and more entries were removed than it read (the count is unknown for a new
        # group, and only grows by what is read, so after a gap it may overstate: at worst
        # one needless resync, never a missed gap).
        removed = int(stream.get("entries-added") or 0) - int(stream.get("length") or 0)
        read_so_far = mine.get("entries-read")
        first = str(stream.get("recorded-first-entry-id") or "0-0")
        behind = stream_id_key(str(mine.get("last-delivered-id") or "0-0")) < stream_id_key(first)
        gap = behind and removed > 0 and (read_so_far is None or removed > int(read_so_far))
        tip = str(stream.get("last-generated-id") or "0-0")
        return MirrorRead(entries=_stream_entries(reply), gap=gap, tip=tip)

    def mirror_pending(
        self, queue: str, group: str, consumer: str, *, count: int, claim_idle_ms: int = 0
    ) -> tuple[list[tuple[str, dict[str, str]]], int]:
        """Return entries read by ``group`` but never acknowledged, and how many were trimmed.

        First this consumer's own pending entries (a restart under the same name); with
        ``claim_idle_ms`` > 0 and none of its own, it takes over entries other consumers left
        unacknowledged for that long (XAUTOCLAIM). Trimmed entries (their job is unknown) are
        acknowledged here and counted, so the caller can resync the queue.
        """
        key = self.keys(queue).events
        try:
            reply = self._call(self.client.xreadgroup, group, consumer, {key: "0"}, count=count)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                raise MirrorGroupMissing(f"No mirror group on {key!r}.") from exc
            raise
        entries = _stream_entries(reply)
        gone = [entry_id for entry_id, fields in entries if not fields]
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        if not entries and not gone and claim_idle_ms > 0:
            raw = self._call(
                self.client.execute_command, "XAUTOCLAIM", key, group, consumer, claim_idle_ms, "0-0", "COUNT", count
            )
            for item in raw[1] or ():
                if item and item[0] and item[1]:
                    entries.append((item[0], _pairs(item[1])))
                elif item and item[0]:
                    gone.append(item[0])
            gone += list(raw[2] if len(raw) > 2 else ())
        if gone:
            self.mirror_ack(queue, group, gone)
        return entries, len(gone)

    def mirror_wait(self, tips: dict[str, str], timeout: float) -> bool:
        """Block until an entry newer than ``tips[queue]`` reaches one of the queues' events streams.

        Returns False after ``timeout`` seconds without one.
        """
        if not tips:
            time.sleep(timeout)
            return False
        streams = {self.keys(queue).events: tip for queue, tip in tips.items()}
        if self._cluster:  # streams on several slots: no single blocking XREAD (engine/cluster.py)
            return bool(self._call(wait_streams, self.client, streams, min(timeout, MAX_BLOCK)))
        block = max(1, int(min(timeout, MAX_BLOCK) * 1000))
        return bool(self._call(self.blocking_client().xread, streams, count=1, block=block))

    def mirror_snapshot(self, queue: str, job_ids: Sequence[str]) -> tuple[str, list[dict[str, str]]]:
        """Read the hashes of ``job_ids`` (empty dict: gone) and the events stream's newest id, in one MULTI.

        The hashes hold exactly the effect of every event up to that id, which makes the id
        a version: a snapshot with a larger one is never older.
        """
        k = self.keys(queue)

        def read() -> list[Any]:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.xrevrange(k.events, count=1)
                for job_id in job_ids:
                    pipe.hgetall(k.job(job_id))
                return list(pipe.execute())

        newest, *hashes = self._call(read)
        return (newest[0][0] if newest else "0-0"), [h or {} for h in hashes]

    def mirror_ack(self, queue: str, group: str, entry_ids: Sequence[str]) -> int:
        """Acknowledge entries of ``queue``'s events stream for ``group``; returns how many were pending."""
        if not entry_ids:
            return 0
        return int(self._call(self.client.xack, self.keys(queue).events, group, *entry_ids))

    def mirror_group_info(self, queue: str, group: str) -> dict[str, Any] | None:
        """Return XINFO GROUPS' record of ``group`` on ``queue`` (None: no such group)."""
        try:
            groups = self._call(self.client.execute_command, "XINFO", "GROUPS", self.keys(queue).events)
        except redis.ResponseError:
            return None
        return next((dict(g) for g in groups if g.get("name") == group), None)

    def state_page(self, queue: str, state: str, *, offset: int, limit: int) -> list[str]:
        """Return ids ``offset`` .. ``offset + limit - 1`` of the state ZSET of ``state`` (resync's walk)."""
        key = getattr(self.keys(queue), self.STATE_KEYS[state])
        return list(self._call(self.client.zrange, key, offset, offset + limit - 1))

    def jobs_exist(self, queue: str, job_ids: Sequence[str]) -> list[bool]:
        """Return, per id, whether the job's hash exists in ``queue``."""

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(self.keys(queue).job(job_id))
                return list(pipe.execute())

        return [bool(n) for n in self._call(read)] if job_ids else []


@dataclass(frozen=True, slots=True)
class FlowJob:
    """One job of a flow for :meth:`Engine.enqueue_flow`.

    ``parent_queue`` is ``""`` for the root; ``policy`` is what the parent does when this job
    fails (``""`` fail, ``"i"`` ignore, ``"r"`` remove the dependency); ``children`` lists
    ``(queue, id, name)`` of the job's direct children (empty for a leaf); ``keep_ms`` is how
    long the job is kept when a flow step fails or cancels it.
    """

    queue: str
    job: NewJob
    parent_queue: str = ""
    policy: str = ""
    keep_ms: int = 0
    children: tuple[tuple[str, str, str], ...] = ()


class MirrorGroupMissing(EngineError):
    """The mirror's consumer group is missing on a queue's events stream (create it and read again)."""


@dataclass(frozen=True, slots=True)
class MirrorRead:
    """What one :meth:`Engine.mirror_read` returned."""

    entries: list[tuple[str, dict[str, str]]]
    #: True when entries the group never read were trimmed away before this read.
    gap: bool
    #: The stream's last generated id (where to block from).
    tip: str


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """Return a stream entry id ``"<ms>-<seq>"`` as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


def _pairs(fields: Any) -> dict[str, str]:
    if isinstance(fields, dict):
        return dict(fields)
    return dict(zip(fields[::2], fields[1::2]))


def _stream_entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """Flatten an XREADGROUP reply (RESP2 list or RESP3 dict) to ``[(entry id, fields)]``."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    found: list[tuple[str, dict[str, str]]] = []
    for _key, entries in streams:
        if entries and isinstance(entries[0], list) and len(entries) == 1 and isinstance(entries[0][0], list):
            entries = entries[0]  # RESP3 wraps the entries once more
        for entry_id, fields in entries:
            found.append((entry_id, _pairs(fields) if fields else {}))
    return found
