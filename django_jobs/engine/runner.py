"""The script runner: the base of :class:`~django_jobs.engine.queue.Engine`.

Holds the client, the key layout and the one registry of Lua scripts (every
``lua/<name>.lua``, registered once at start-up), and sends every command: script calls
(:meth:`ScriptRunner._run`, chunked and pipelined with :meth:`ScriptRunner._run_chunked`, or
streamed with :meth:`ScriptRunner._run_streamed`)
and plain commands (:meth:`ScriptRunner._call`), mapping Redis errors to the exceptions of
:mod:`django_jobs.exceptions`.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Any, cast

import redis

from django_jobs import runtime
from django_jobs.conf import JobsSettings
from django_jobs.engine.cluster import ClusterWaiter, patiently, run_script, run_script_and_wait
from django_jobs.engine.connection import build_client
from django_jobs.engine.keys import QueueKeys
from django_jobs.engine.replicas import ENQUEUE_SCRIPTS, replica_wait
from django_jobs.engine.scripts import script_names, script_source
from django_jobs.engine.topology import blocking_twin, describe, is_cluster
from django_jobs.exceptions import RedisOutOfMemory, RedisUnavailable

#: Attempts of a script call on a connection error before RedisUnavailable (scripts are replay-safe).
SCRIPT_RETRIES = 3
#: Longest single blocking wait on the marker keys, seconds.
MAX_BLOCK = 30.0

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    _hiredis_pack = None


def _packed(conn: Any, command: tuple[Any, ...]) -> Any:
    """Return ``command`` in the Redis protocol, as ``conn.send_packed_command`` takes it (a list of bytes).

    hiredis packs the whole command in C; redis-py's ``pack_command`` encodes each argument
    in Python first (~45 us for an enqueue's 17 arguments against ~6 us here; the scripts'
    arguments are str and int only). Refuses what redis-py refuses (None, bool) the same way.
    """
    if _hiredis_pack is None:
        return conn.pack_command(*command)
    try:
        return [_hiredis_pack(command)]
    except TypeError as exc:
        raise redis.DataError(str(exc)) from exc

#: Whether this platform's SO_RCVTIMEO / SO_SNDTIMEO take a ``struct timeval`` of two longs (Linux).
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")


def _connect_kernel_timed(conn: Any) -> None:
    """Connect ``conn`` and move its socket's timeout from Python to the kernel (plain TCP and Unix sockets).

    redis-py gives the socket ``socket_timeout`` with ``settimeout()``, so CPython calls ``poll()``
    before every send and every receive: two system calls more per script call than a blocking
    socket (what a client without a timeout, Huey's, makes). The same timeout set as
    ``SO_RCVTIMEO`` / ``SO_SNDTIMEO`` on a blocking socket bounds each send and receive alike:
    one that times out raises ``BlockingIOError``, which redis-py raises as ``ConnectionError``
    and :meth:`ScriptRunner._with_retries` treats as it treats a ``TimeoutError`` (disconnect,
    send again, then ``RedisUnavailable``). TLS sockets, no timeout, or another platform: as
    redis-py set it. A read that passes its own timeout sets Python's back (correct, only slower).
    """
    # As a send connects on its own (redis-py's send_packed_command): not connect(), which wraps
    # the connection's retry policy around it once more (a refused connection then took seconds
    # to fail instead of ~0.1 s; _with_retries is the retry loop of script calls).
    connect = getattr(conn, "connect_check_health", None)
    if connect is not None:
        connect(check_health=False)
    else:  # redis-py before connect_check_health
        conn.connect()
    sock = conn._timed_sock = conn._sock  # seen: not looked at again until the socket changes
    timeout = conn.socket_timeout
    if not _KERNEL_TIMEOUTS or not timeout or type(sock) is not socket.socket:
        return
    seconds = int(timeout)
    micros = int((timeout - seconds) * 1_000_000)
    timeval = struct.pack("ll", seconds, micros if seconds or micros else 1)  # (0, 0) would mean no timeout
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def _reply(conn: Any) -> Any:
    """Read one reply on ``conn``; an error reply is returned, not raised (the connection stays in step)."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc


def _send_one(conn: Any, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Send one script call as EVALSHA on ``conn``; return its reply.

    NOSCRIPT (cache flushed, failover) sends it again as EVAL, which sends the source and caches
    it: unlike SCRIPT LOAD + EVALSHA, it cannot meet another flush in between
    (tests/chaos/test_redis_stalls.py).
    """
    conn.send_packed_command(_packed(conn, ("EVALSHA", script.sha, len(keys), *keys, *args)))
    try:
        return conn.read_response()
    except redis.exceptions.NoScriptError:
        conn.send_command("EVAL", script.script, len(keys), *keys, *args)
        return conn.read_response()


def _send_many(conn: Any, script: Any, keys: Sequence[str], calls: Sequence[Sequence[Any]]) -> list[Any]:
    """Send one script call per argument list of ``calls`` as EVALSHA, pipelined on ``conn``; return the replies.

    A call that meets NOSCRIPT is sent again as EVAL once every reply is read (an error reply
    too, so the connection stays in step); the first error reply is then raised.
    """
    conn.send_packed_command(
        [packed for args in calls for packed in _packed(conn, ("EVALSHA", script.sha, len(keys), *keys, *args))]
    )
    return _read_replies(conn, script, keys, calls)


def _send_stream(conn: Any, script: Any, keys: Sequence[str], calls: _Replayable) -> list[Any]:
    """As :func:`_send_many`, but each call is sent as soon as ``calls`` makes it, before the next is made.

    Redis runs call N while the caller makes call N+1. Should making a call fail once others
    were sent, the connection is closed: their replies are never read on it.
    """
    sent = 0
    try:
        for args in calls:
            conn.send_packed_command(_packed(conn, ("EVALSHA", script.sha, len(keys), *keys, *args)))
            sent += 1
    except BaseException:
        if sent:
            conn.disconnect()
        raise
    return _read_replies(conn, script, keys, calls.made)


def _read_replies(conn: Any, script: Any, keys: Sequence[str], calls: Sequence[Sequence[Any]]) -> list[Any]:
    """Read the replies of ``calls`` of ``script``, sent pipelined on ``conn`` (:func:`_read_each`); raise the first error reply."""
    replies = _read_each(conn, [script] * len(calls), [keys] * len(calls), calls)
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def _read_each(conn: Any, scripts: Sequence[Any], keys: Sequence[Sequence[str]], calls: Sequence[Sequence[Any]]) -> list[Any]:
    """Read the replies of ``calls`` (call N of ``scripts[N]`` with ``keys[N]``), sent pipelined on ``conn``.

    An error reply is returned in its place. A call that met NOSCRIPT (cache flushed, failover)
    is sent again as EVAL once every reply is read, so the connection stays in step; it then
    runs after the others.
    """
    replies = [_reply(conn) for _ in calls]
    for index, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.NoScriptError):
            script, k, args = scripts[index], keys[index], calls[index]
            conn.send_command("EVAL", script.script, len(k), *k, *args)
            replies[index] = _reply(conn)
    return replies


def _send_reads(conn: Any, script: Any, keys: Sequence[str], commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` (reads) pipelined on ``conn``; return their replies, an error reply raised once all are read.

    ``script`` and ``keys`` are unused (the signature :meth:`ScriptRunner._with_retries` calls):
    reads are safe to send again after a connection error.
    """
    # One buffer: send_packed_command makes a system call per item of its list.
    conn.send_packed_command([b"".join(packed for command in commands for packed in _packed(conn, command))])
    replies = [_reply(conn) for _ in commands]
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies


class _Replayable:
    """Argument lists made one by one from ``source``, kept as they are made (:attr:`made`).

    Iterating again (a resend after a connection error) yields those made so far, then makes the rest.
    """

    __slots__ = ("_source", "made")

    def __init__(self, source: Iterable[Sequence[Any]]) -> None:
        self._source = iter(source)
        self.made: list[Sequence[Any]] = []

    def __iter__(self) -> Iterator[Sequence[Any]]:
        yield from list(self.made)
        for args in self._source:
            self.made.append(args)
            yield args


class _OwnConnection:
    """A connection owned by one thread (and one process); closed when the thread ends."""

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pid = runtime.pid()

    def close(self) -> None:
        if self.pid == runtime.pid():
            self.conn.disconnect()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass


class ScriptRunner:
    """Redis access for one process: a client, the key layout and the registered scripts."""

    #: Job ids per script call of a bulk action (each call stays short; Redis serves others between).
    BULK_CHUNK = 1000

    def __init__(self, settings: JobsSettings, client: Any = None) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        #: A redis.Redis (one server, Sentinel) or a RedisCluster (engine/topology.py).
        self.client: Any = client if client is not None else build_client(settings)
        self._blocking: Any = None  # redis.Redis, or a RedisCluster on a cluster
        self._keys: dict[str, QueueKeys] = {}
        #: Per queue, the enqueue script's keys and its job key prefix (transitions.py, enqueue_one).
        self._enqueue_heads: dict[str, tuple[tuple[str, ...], str]] = {}
        # The one registry: every script, registered once (no round trip: only the SHA1 is computed).
        self._scripts = {name: self.client.register_script(script_source(name)) for name in script_names()}
        self._lock = threading.Lock()
        self._lane = threading.local()
        self._owned: weakref.WeakSet[_OwnConnection] = weakref.WeakSet()
        self.maxlen = settings.events_maxlen
        self._limit_defaults: dict[str, tuple[int, int, int]] = {}
        #: A Redis Cluster client: script calls and idle waits go per slot (engine/cluster.py).
        self._cluster = is_cluster(self.client)
        #: Whether the one server is a Redis Cluster node (asked once by :meth:`_is_cluster`).
        self._cluster_node: bool | None = None
        self._markers: Any = None  # the marker threads' RedisCluster (:meth:`_marker_client`)
        self._waiter = ClusterWaiter(self._marker_client) if self._cluster else None
        #: ENQUEUE_WAIT: (replicas, timeout ms) each enqueue waits for (docs/scaling.md), or None.
        self._enqueue_wait = settings.enqueue_wait
        #: LEAN_JOB_HASH: enqueue.lua leaves 'p' at 0 and 'ws' out of a new waiting job's hash.
        self._lean = settings.lean_job_hash
        #: ACTIVE_EVENTS per queue (or shard), asked of the settings once (transitions.py, fetch).
        self._active_events: dict[str, bool] = {}
        #: close() was called: blocking waits made since close their connection when they end.
        self._closed = False

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

    def _marker_client(self) -> Any:
        """Return the client of the marker threads' blocking waits on a cluster (engine/cluster.py).

        A blocking twin without redis-py's retries: a marker thread retries itself, so the waits
        that :meth:`close` ends stay ended (redis-py would reconnect and wait again, and once the
        nodes are gone log a failed topology refresh for an engine already closed).
        """
        with self._lock:
            if self._markers is None:
                self._markers = blocking_twin(self.client, MAX_BLOCK + 10, retry=False)
            return self._markers

    # -- sending --------------------------------------------------------------------------

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any], *, creates: bool = False) -> Any:
        """Call script ``name`` on this thread's own connection.

        The hot path: EVALSHA straight on a connection owned by the calling thread, with no
        pool checkout and no per-call wrappers (:func:`_send_one`). NOSCRIPT (cache flushed,
        failover) loads the script and calls again; a connection error reconnects and sends the
        call again (:meth:`_with_retries`), which the scripts make safe. ``ENQUEUE_WAIT`` waits
        after the scripts that create jobs (``ENQUEUE_SCRIPTS``), and after this call when
        ``creates`` says it does (a flow's part written by its producer).
        """
        script = self._scripts[name]
        creates = creates or name in ENQUEUE_SCRIPTS
        if self._cluster:
            try:
                if self._enqueue_wait is not None and creates:
                    return run_script_and_wait(self.client, script, keys, args, self.target, self._enqueue_wait)
                return run_script(self.client, script, keys, args, self.target)
            except redis.ResponseError as exc:
                raise self._response_error(exc) from exc
        wait = self._enqueue_wait if creates else None
        return self._with_retries(_send_one, script, keys, args, wait)

    def _run_chunked(
        self, name: str, keys: Sequence[str], head: Sequence[Any], items: Sequence[Any], *, width: int, chunk: int
    ) -> list[Any]:
        """Call script ``name`` once per ``chunk`` items, pipelined in one round trip; return the replies joined.

        ``items`` is flat, ``width`` values per item; each call gets ``head`` and then its items.
        One chunk is a plain :meth:`_run` call.
        """
        step = width * chunk
        if self._cluster:  # one call per chunk (a cluster pipeline cannot carry script calls)
            return [r for start in range(0, len(items), step) for r in self._run(name, keys, (*head, *items[start : start + step]))]
        if len(items) <= step:
            return list(self._run(name, keys, (*head, *items)))
        calls = [(*head, *items[start : start + step]) for start in range(0, len(items), step)]
        return [reply for replies in self._run_pipelined(name, keys, calls) for reply in replies]

    def _run_streamed(self, name: str, keys: Sequence[str], calls: Iterable[Sequence[Any]]) -> list[Any]:
        """Call script ``name`` once per argument list of ``calls``; return the replies in order.

        Each call is sent as soon as ``calls`` makes it, without waiting for the reply of the
        one before: Redis runs a call while the caller makes the next (one server and
        Sentinel: :func:`_send_stream`, with the retries of :meth:`_with_retries`). On a
        cluster, one call after another, as :meth:`_run_chunked` does.
        """
        if self._cluster:
            return [reply for args in calls for reply in self._run(name, keys, args)]
        script = self._scripts[name]
        wait = self._enqueue_wait if name in ENQUEUE_SCRIPTS else None
        replies = self._with_retries(_send_stream, script, keys, _Replayable(calls), wait)
        return list(chain.from_iterable(replies))

    def _own_connection(self) -> Any:
        """Return this thread's own connection (made on first use, and again after a fork)."""
        own = getattr(self._lane, "own", None)
        if own is None or own.pid != runtime.pid():
            own = self._lane.own = _OwnConnection(self.client.connection_pool.make_connection())
            self._owned.add(own)
        return own.conn

    def _own_blocking_connection(self) -> Any:
        """Return this thread's own connection of :meth:`blocking_client`, kept between its waits.

        No pool checkout and release around each wait (redis-py's bookkeeping of both, and a
        ``poll()`` to see whether the connection has data). Made on first use and again after a
        fork (another process' socket is never used); :meth:`close` disconnects it (the next
        wait connects again); disconnected by a wait that fails, reconnected by the next.
        """
        own = getattr(self._lane, "blocking", None)
        if own is None or own.pid != runtime.pid():
            own = self._lane.blocking = _OwnConnection(self.blocking_client().connection_pool.make_connection())
            self._owned.add(own)
        return own.conn

    def _run_pipelined(self, name: str, keys: Sequence[str], calls: Sequence[Sequence[Any]]) -> list[Any]:
        """Call script ``name`` once per argument list of ``calls``, pipelined on this thread's own connection.

        One round trip, every call packed by hiredis (no ``SCRIPT EXISTS`` first, as a redis-py
        pipeline sends; :func:`_send_many`). A call that meets NOSCRIPT is sent again as EVAL once
        the other replies are read; a connection error sends them all again (:meth:`_with_retries`),
        which the scripts make safe.
        """
        script = self._scripts[name]
        wait = self._enqueue_wait if name in ENQUEUE_SCRIPTS else None
        return cast("list[Any]", self._with_retries(_send_many, script, keys, calls, wait))

    def _reads(self, commands: Sequence[tuple[Any, ...]], *, atomic: bool = False) -> list[Any]:
        """Send read commands pipelined on this thread's own connection (one server or Sentinel); return their replies.

        ``atomic``: in ``MULTI`` / ``EXEC``, so they read at one instant (the replies are EXEC's).
        Bare commands cost Redis less than the same reads made from a script: no Lua tables
        built from their replies and back (a job's hash read by ``HGETALL`` in ``MULTI``: ~3 us of
        Redis' CPU against ~9 in ``mirror_snapshot.lua``, ``python -m bench.mirror_scripts``).
        A connection error sends them again (:meth:`_with_retries`): they only read.
        """
        if atomic:
            replies = self._with_retries(_send_reads, None, (), [("MULTI",), *commands, ("EXEC",)], None)
            return cast("list[Any]", replies[-1])
        return cast("list[Any]", self._with_retries(_send_reads, None, (), commands, None))

    def _with_retries(
        self, send: Callable[[Any, Any, Sequence[str], Any], Any], script: Any, keys: Sequence[str], payload: Any,
        wait: tuple[int, int] | None,
    ) -> Any:
        """Return ``send(conn, script, keys, payload)`` on this thread's own connection, then WAIT for ``wait`` replicas if set.

        The one retry loop of script calls: an error reply raises at once (typed by
        :meth:`_response_error`); a connection error disconnects and sends again (after a short
        back-off, :data:`SCRIPT_RETRIES` times), which the scripts make safe (replaying a
        request has the effect of once), then raises RedisUnavailable.
        """
        for attempt in range(SCRIPT_RETRIES + 1):
            conn = self._own_connection()
            try:
                if conn._sock is None or conn._sock is not getattr(conn, "_timed_sock", None):
                    _connect_kernel_timed(conn)  # first use, or a new socket (a reconnect): no poll() per call
                reply = send(conn, script, keys, payload)
                if wait is not None:
                    replica_wait(conn, wait)
                return reply
            except redis.ResponseError as exc:
                raise self._response_error(exc) from exc
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                conn.disconnect()
                if attempt == SCRIPT_RETRIES:
                    raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _blocking_script(
        self, name: str, marker: str, timeout: float, keys: Sequence[str], args: Sequence[Any],
        blocked: Callable[[int | None], None] | None = None,
    ) -> Any:
        """Send ``CLIENT ID``, ``BLPOP marker timeout`` and script ``name`` in one packet on this thread's blocking connection.

        Return the script's reply once the ``BLPOP`` ended (a token, or its timeout), or None on
        NOSCRIPT (the caller calls the script again the usual way). Every reply is read, an
        error reply too, so the connection stays in step. ``blocked`` gets the connection's
        client id before the wait (None when ``CLIENT ID`` was refused). One server only.

        The connection is kept between the thread's waits (:meth:`_own_blocking_connection`); one
        found closed when the packet is sent is replaced once, a wait that fails later raises.
        """
        script = self._scripts[name]
        timeout = min(MAX_BLOCK, max(0.01, round(timeout, 3)))
        conn = self._own_blocking_connection()
        kept = getattr(conn, "_sock", None) is not None  # connected by an earlier wait of this thread
        packet = [
            *_packed(conn, ("CLIENT", "ID")),
            *_packed(conn, ("BLPOP", marker, timeout)),
            *_packed(conn, ("EVALSHA", script.sha, len(keys), *keys, *args)),
        ]
        replies: list[Any] = []
        try:
            try:
                conn.send_packed_command(packet)
                replies.append(_reply(conn))
            except redis.ConnectionError:
                if not kept:
                    raise
                # A kept connection closed while it was idle (a restart, CLIENT KILL, the server's
                # idle timeout): not even CLIENT ID answered. Once more on a new connection, as
                # the pool's checkout reconnected such a connection before the wait.
                conn.disconnect()
                conn.send_packed_command(packet)
                replies.append(_reply(conn))
            if blocked is not None:
                blocked(replies[0] if isinstance(replies[0], int) else None)
            replies.append(_reply(conn))
            replies.append(_reply(conn))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            conn.disconnect()
            raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc
        except BaseException:
            if len(replies) < 3:
                conn.disconnect()  # replies left unread: the next wait starts on a new connection
            raise
        finally:
            if self._closed:
                conn.disconnect()  # close() ran meanwhile: nothing else would close a reconnected socket
        if isinstance(replies[1], redis.ResponseError):
            raise self._response_error(replies[1]) from replies[1]
        reply = replies[2]
        if isinstance(reply, redis.exceptions.NoScriptError):
            return None
        if isinstance(reply, redis.ResponseError):
            raise self._response_error(reply) from reply
        return reply

    def unblock(self, client_id: int) -> None:
        """End the blocking wait of connection ``client_id`` now, as if it timed out (``CLIENT UNBLOCK``)."""
        self._call(self.client.client_unblock, client_id)

    def _bulk(self, name: str, keys: Sequence[str], head: Sequence[Any], job_ids: Sequence[str]) -> list[int]:
        """Call script ``name`` once per :attr:`BULK_CHUNK` ids, pipelined: one round trip."""
        if not job_ids:
            return []
        return [int(c) for c in self._run_chunked(name, keys, head, job_ids, width=1, chunk=self.BULK_CHUNK)]

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a plain client command, translating connection errors (on a cluster, waiting out CLUSTERDOWN)."""
        try:
            if self._cluster:
                return patiently(lambda: func(*args, **kwargs), self.target, self.client)
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

    def _default_limits(self, queue: str) -> tuple[int, int, int]:
        """Return the settings' (rate count, rate period ms, concurrency) of ``queue``; 0 = none."""
        found = self._limit_defaults.get(queue)
        if found is None:
            options = self.settings.queues.get(queue, {})
            rate = options.get("RATE_LIMIT")
            count, period_ms = (rate.count, rate.period_ms) if rate is not None else (0, 1000)
            found = self._limit_defaults[queue] = (count, period_ms, int(options.get("CONCURRENCY") or 0))
        return found

    # -- the server -----------------------------------------------------------------------

    def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"Cannot reach Redis at {self.target}: {exc}") from exc

    def server_time_ms(self) -> int:
        """Return Redis' clock, ms."""
        seconds, micros = self._call(self.client.time)
        return int(seconds) * 1000 + int(micros) // 1000

    def _is_cluster(self) -> bool:
        """Return True on a Redis Cluster: configured as one, or a server that says it is a node (asked once)."""
        if self._cluster:
            return True
        cached = self._cluster_node
        if cached is None:
            try:
                info = self._call(self.client.info, "cluster")
            except redis.ResponseError:  # INFO refused (ACL, renamed command): not a Cluster we can see
                info = {}
            cached = self._cluster_node = bool(int(info.get("cluster_enabled", 0) or 0))
        return cached

    def close(self) -> None:
        """Close this engine's connections, the script connections of every thread too.

        A blocking wait made after it (a fetcher thread that had not stopped yet) closes its
        connection when it ends, as nothing else would.
        """
        self._closed = True
        for own in list(self._owned):
            own.close()
        if self._waiter is not None:
            self._waiter.stop()
            if self._markers is not None:
                self._markers.disconnect_connection_pools()  # ends the marker threads' waits
        if self._cluster:  # a closed RedisCluster stays unusable; a closed Redis reconnects
            cast(Any, self.client).disconnect_connection_pools()
        else:
            self.client.close()
        if self._blocking is not None:
            if self._cluster:
                self._blocking.disconnect_connection_pools()
            else:
                self._blocking.close()
