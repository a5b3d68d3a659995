"""What the engine does differently on a Redis Cluster: script calls and the idle wait.

Every key of a queue carries the queue's hash tag, so every script call touches one slot and
redis-py's :class:`~redis.cluster.RedisCluster` routes it by its first key (following MOVED,
ASK and failovers). What differs from one server:

- :func:`run_script`: EVALSHA through the cluster client (not on a thread-owned connection),
  EVAL when the node has not cached the script (a promoted replica, a new node).
- :func:`patiently`: every command and script call waits out a failover (``CLUSTERDOWN``,
  ``TRYAGAIN``, a primary that does not answer while other nodes do), up to
  :data:`FAILOVER_PATIENCE` seconds; redis-py's own retries give up after about two.
- :func:`run_script_and_wait`: ENQUEUE_WAIT on a cluster. ``WAIT`` counts the replicas that
  acknowledged the writes *of its own connection*, so the script call and the ``WAIT`` go in one
  non-transactional pipeline on the own client of the node that owns the slot; ``MOVED``,
  ``ASK``, ``TRYAGAIN`` and connection errors are followed here (RedisCluster's own routing would
  send them on two connections).
- :class:`ClusterWaiter`: a worker serving queues on several slots cannot BLPOP their markers
  in one command (CROSSSLOT). One thread per queue blocks on that queue's marker (no CPU while
  idle) and latches a wake-up flag; :meth:`ClusterWaiter.wait` sleeps on a condition until a
  flag of one of its queues is up.
- :func:`xread_blocking`: a listener of a sharded queue blocks on the events streams of its
  shards, in several slots, at once: one ``XREAD BLOCK`` per stream on its node's connection,
  a selector until the first answers, ``CLIENT UNBLOCK`` for the others.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from django_jobs.engine.replicas import replica_acks
from django_jobs.exceptions import RedisUnavailable

logger = logging.getLogger("django_jobs.engine")

#: Seconds a marker thread waits after a connection error before it blocks again.
ERROR_PAUSE = 0.5

#: Seconds a call waits out a failover before RedisUnavailable: CLUSTERDOWN or TRYAGAIN replies,
#: or a slot's primary that does not answer while other nodes do. While a primary is down and
#: its replica is not promoted yet, its slots cannot be reached (for ``cluster-node-timeout`` and
#: the election after it), and once it is marked failed every node of a cluster with full
#: coverage (Redis' default) refuses every key; longer on a loaded host, and until the node comes
#: back when it has no replica.
FAILOVER_PATIENCE = 15.0


def patiently[T](call: Callable[[], T], target: str, client: Any = None) -> T:
    """Return ``call()``; while a failover is under way, wait and call again (pauses doubling from :data:`WAIT_PAUSE` to 1 s).

    A failover under way: the cluster answers CLUSTERDOWN / TRYAGAIN / a slot not covered
    (nothing was run), or ``call`` could not reach its node (after redis-py's own retries) while
    another node of ``client`` answers, re-reading the slot map (a primary died: its replica
    takes over). When no node answers at all, the connection error is raised at once. Sending a
    call again after a lost connection is what redis-py's retries do already: every script is
    replay-safe, and plain commands get more of the same retries.

    Raises:
        RedisUnavailable: the cluster still refused after :data:`FAILOVER_PATIENCE` seconds.
    """
    deadline = time.monotonic() + FAILOVER_PATIENCE
    pause = WAIT_PAUSE
    while True:
        try:
            return call()
        except (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError, redis.exceptions.SlotNotCoveredError) as exc:
            if time.monotonic() + pause > deadline:
                raise RedisUnavailable(
                    f"The Redis Cluster at {target} refused the call for {FAILOVER_PATIENCE:.0f} s ({exc}): "
                    "a slot has no primary (a failover that did not complete, a primary without a replica down)."
                ) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if (client is None or isinstance(exc, redis.AuthenticationError) or time.monotonic() + pause > deadline
                    or not _cluster_answers(client)):
                raise
            logger.debug("a node of %s did not answer while others do (a failover?); calling again", target)
        time.sleep(pause)
        pause = min(1.0, pause * 2)


def _cluster_answers(client: Any) -> bool:
    """Re-read the slot map of ``client``; return whether a node answered (False: the whole cluster is down, or refuses us)."""
    try:
        client.nodes_manager.initialize()
    except (redis.RedisError, redis.exceptions.RedisClusterException):
        return False
    return True


def run_script(client: Any, script: Any, keys: Sequence[str], args: Sequence[Any], target: str) -> Any:
    """Call a registered script on the node that serves ``keys[0]``.

    A connection error (a primary that died) is retried by RedisCluster itself, which refreshes
    its slot map each time; the scripts make a replayed call have the effect of one. CLUSTERDOWN
    and TRYAGAIN are waited out (:func:`patiently`).

    Raises:
        RedisUnavailable: the cluster did not answer after RedisCluster's retries.
    """
    if not keys:
        raise ValueError("On a Redis Cluster every script call needs a key: it routes the call to a slot.")
    def call() -> Any:
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # EVAL sends the source and caches it on that node (a replica promoted by a failover
            # has an empty script cache).
            return client.eval(script.script, len(keys), *keys, *args)

    try:
        return patiently(call, target, client)
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError) as exc:
        raise RedisUnavailable(f"Cannot reach Redis at {target}: {exc}") from exc


#: Attempts of an ENQUEUE_WAIT script call (redirects, TRYAGAIN, a node that died) before RedisUnavailable.
WAIT_ATTEMPTS = 16
#: Seconds before the next attempt after TRYAGAIN or a connection error (doubled each time, at most 1 s).
WAIT_PAUSE = 0.05


def run_script_and_wait(
    client: Any, script: Any, keys: Sequence[str], args: Sequence[Any], target: str, wait: tuple[int, int]
) -> Any:
    """Call a registered script and ``WAIT replicas timeout`` on one connection to the slot's primary.

    Returns the script's reply; logs when fewer replicas than asked acknowledged (the job is
    enqueued on the primary all the same, see :func:`~django_jobs.engine.replicas.replica_acks`).
    The call is replay-safe, so sending it again after a redirect or a lost connection is safe.

    Raises:
        RedisUnavailable: no primary answered for the slot after :data:`WAIT_ATTEMPTS` attempts.
        redis.ResponseError: the script's own error (e.g. OOM).
    """
    if not keys:
        raise ValueError("On a Redis Cluster every script call needs a key: it routes the call to a slot.")
    node: Any = None  # None: the slot's primary in the slot map; else the node an ASK named
    asking = False
    source = False  # EVAL (the node lacks the script) instead of EVALSHA
    pause = WAIT_PAUSE
    last: Exception | None = None
    for _attempt in range(WAIT_ATTEMPTS):
        try:
            found = node if node is not None else client.get_node_from_key(keys[0])
            with client.get_redis_connection(found).pipeline(transaction=False) as pipe:
                if asking:
                    pipe.execute_command("ASKING")
                if source:
                    pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
                else:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", *wait)
                replies = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException) as exc:
            if isinstance(exc, redis.AuthenticationError):
                raise
            last = exc  # the primary died: re-read the slot map (a replica is promoted) and try again
            node, asking = None, False
            time.sleep(pause)
            pause = min(1.0, pause * 2)
            _refresh(client)
            continue
        reply, acked = replies[-2], replies[-1]
        if isinstance(reply, redis.exceptions.AskError) and not isinstance(reply, redis.exceptions.MovedError):
            node = client.get_node(reply.host or found.host, reply.port)
            if node is None:
                _refresh(client)
            asking = node is not None
            last = reply
            continue
        node, asking = None, False
        if isinstance(reply, redis.exceptions.MovedError):
            last = reply
            _refresh(client)
            continue
        if isinstance(reply, (redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)):
            last = reply
            time.sleep(pause)
            pause = min(1.0, pause * 2)
            continue
        if isinstance(reply, redis.exceptions.NoScriptError):
            source = True  # a promoted replica or a new node: send the source once (it is cached then)
            last = reply
            continue
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acked, Exception):
            raise acked
        replica_acks(acked, wait)
        return reply
    raise RedisUnavailable(f"Cannot reach Redis at {target}: {last}")


def _refresh(client: Any) -> None:
    """Re-read the cluster's slot map (a failover or a resharding moved the slot)."""
    try:
        client.nodes_manager.initialize()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        logger.debug("re-reading the slot map failed (%s); retrying", exc)


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


#: Seconds past the XREAD's own BLOCK that :func:`xread_blocking` waits for a first reply
#: (Redis ends a blocked command's timeout on its next cron tick: up to 100 ms late at hz 10).
BLOCK_GRACE = 1.0
#: Seconds a stream's XREAD may take to answer after CLIENT UNBLOCK found it not blocked
#: (its reply already on the way) before its connection is closed instead.
UNBLOCK_GRACE = 0.05
#: Seconds :func:`xread_blocking` pauses after an error reply (MOVED, ASK) before returning.
STALE_PAUSE = 0.05


@dataclass(slots=True, eq=False)
class _Blocked:
    """One stream's blocking XREAD of :func:`xread_blocking`: its node's client and connection."""

    node_client: Any
    conn: Any
    client_id: int | None = None
    #: True once its replies are read or the connection is closed (it may go back to the pool).
    done: bool = False


def xread_blocking(client: Any, streams: Sequence[tuple[str, str]], *, count: int, block_ms: int) -> list[Any]:
    """Block on streams in several slots at once; return each one's XREAD reply (None: nothing new).

    One XREAD cannot name streams in several slots, and a blocking read of each in turn would
    leave the others unwatched. So every stream ``(key, after id)`` gets its own ``XREAD COUNT
    count BLOCK block_ms`` on a connection of its node, all sent before any is waited for; a
    selector (epoll) on their sockets sleeps (no thread, no CPU) until the first answers; the others'
    waits are ended with ``CLIENT UNBLOCK`` (they answer nil, or entries that came meanwhile,
    which are returned too) and every reply is read, so each connection goes back to its pool
    clean. A connection that cannot be unblocked (``CLIENT ID`` refused by an ACL, or its
    XREAD not started yet) is closed instead, which ends its wait too.

    An error reply (``MOVED`` after a resharding, ...) counts as nothing read and re-reads the
    slot map: the caller's next read goes where the slot is now.

    Raises:
        redis.ConnectionError, redis.TimeoutError: a node did not answer (the connections are
        closed and the slot map re-read).
    """
    waits: list[_Blocked] = []
    try:
        for key, after in streams:
            node_client = client.get_redis_connection(client.get_node_from_key(key))
            conn = node_client.connection_pool.get_connection()
            waits.append(_Blocked(node_client, conn))
            conn.send_packed_command(conn.pack_commands([
                ("CLIENT", "ID"), ("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", key, after),
            ]))
        for wait in waits:
            try:
                found = wait.conn.read_response()
                wait.client_id = found if isinstance(found, int) else None
            except redis.ResponseError:  # CLIENT ID refused: closed below instead of unblocked
                wait.client_id = None
        deadline = time.monotonic() + block_ms / 1000 + BLOCK_GRACE
        answered = _first_answers(waits, deadline)
        for wait in waits:
            if wait in answered:
                continue
            unblocked = wait.client_id is not None and bool(wait.node_client.client_unblock(wait.client_id))
            if not unblocked and not wait.conn.can_read(timeout=UNBLOCK_GRACE):
                wait.conn.disconnect()  # its XREAD is still waiting: closing the connection ends it
                wait.done = True
        replies: list[Any] = []
        stale = False
        for wait in waits:
            if wait.done:
                replies.append(None)
                continue
            try:
                replies.append(wait.conn.read_response())
            except redis.ResponseError:
                replies.append(None)
                stale = True
            wait.done = True
        if stale:
            _refresh(client)
            time.sleep(STALE_PAUSE)  # a slot that is migrating answers ASK until it is done: no busy loop
        return replies
    except (redis.ConnectionError, redis.TimeoutError):
        _refresh(client)  # a node that died: the next read finds the primary promoted in its place
        raise
    finally:
        for wait in waits:
            if not wait.done:  # a reply still unread: the connection must not be used again
                wait.conn.disconnect()
            wait.node_client.connection_pool.release(wait.conn)


def _first_answers(waits: Sequence[_Blocked], deadline: float) -> list[_Blocked]:
    """Sleep until one of ``waits`` has a reply to read (or ``deadline``); return those that have one."""
    with selectors.DefaultSelector() as selector:  # epoll on Linux: no FD_SETSIZE limit, as select() has
        for wait in waits:
            selector.register(wait.conn._sock, selectors.EVENT_READ)  # redis-py's connection socket
        while True:
            answered = [wait for wait in waits if wait.conn.can_read(timeout=0)]  # the parser's buffer first
            left = deadline - time.monotonic()
            if answered or left <= 0:
                return answered
            selector.select(left)  # sleeps until a socket has bytes: the first answer


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
        """Block on one queue's marker for ever, latching a wake-up for each pop.

        Once stopped, it closes the connections of its client: the engine's close() closes the
        client it finds, but one a marker thread was still building then (its first wait)
        would stay connected until the garbage collector finalized it (engine/topology.py's BlockingTwin).
        """
        client = None
        try:
            while not self._stopped:
                try:
                    client = self._client_factory()
                    popped = client.blpop([marker], timeout=self._block)
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
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.disconnect_connection_pools()

    def stop(self) -> None:
        """Let the marker threads end (each ends when its current wait returns)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
